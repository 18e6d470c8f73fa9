// Crypto-shredding on a real SoftHSMv2 token when the token holds more than custody made: a second
// object carrying a version's CKA_ID and label (anyone with the PIN can make one), or one the
// token will not destroy (CKA_DESTROYABLE false). Destruction reaches every such object or says it
// did not; reconciliation reports any object a destroyed version's id or label still names; an
// import job whose key pair cannot be destroyed stays active and raises an alarm.
#include <gtest/gtest.h>

#include <boost/json.hpp>

#include "daemon/core/import/import_jobs.h"
#include "daemon/core/keys/key_admin.h"
#include "daemon/core/keys/token_key_vault.h"
#include "tests/support/fake_clock.h"
#include "tests/support/softhsm_token.h"

using namespace custody;
using namespace custody::core;
using namespace std::chrono_literals;

namespace {

constexpr std::int64_t kMinimumWait = 7 * 86400;

// The token is shared by the whole binary: reports are read for one key's entries, not as a whole.
bool mentions(const ReconcileReport& r, const std::string& key) {
  for (const auto* list : {&r.missing, &r.altered, &r.strays, &r.undestroyed})
    for (const auto& item : *list)
      if (item.find(key) != std::string::npos) return true;
  return false;
}

class Destruction : public ::testing::Test {
 protected:
  void SetUp() override {
    store_ = StateStore::open(dir_.path() + "/state.db").value();
    admin_ = std::make_unique<KeyAdmin>(registry_, *store_, vault_, clock_, LifecycleSettings{kMinimumWait});
  }
  std::string name(const std::string& base) {
    std::string s = base + "-" + std::to_string(::getpid()) + "-" +
                    ::testing::UnitTest::GetInstance()->current_test_info()->name();
    for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return s.substr(0, 60);
  }
  Policy nobody() { return *parse_policy(boost::json::parse("[]")); }

  // What an attacker with the PIN can do: a token AES key carrying ref's CKA_ID and label.
  void plant_object(const ObjectRef& ref, bool destroyable = true) {
    auto lease = pool_.acquire();
    ASSERT_TRUE(lease);
    p11::AttributeTemplate t;
    t.add_ulong(CKA_CLASS, CKO_SECRET_KEY).add_ulong(CKA_KEY_TYPE, CKK_AES).add_ulong(CKA_VALUE_LEN, 32);
    t.add_bool(CKA_TOKEN, true).add_bool(CKA_PRIVATE, true).add_bool(CKA_ENCRYPT, true).add_bool(CKA_DECRYPT, true);
    t.add_bytes(CKA_ID, ref.id).add_string(CKA_LABEL, ref.label);
    if (!destroyable) t.add_bool(CKA_DESTROYABLE, false);
    auto made = lease->session().generate_key(CKM_AES_KEY_GEN, t);
    ASSERT_TRUE(made) << made.error().describe();
  }
  std::size_t carriers(const ObjectRef& ref) {
    auto lease = pool_.acquire();
    EXPECT_TRUE(lease);
    auto found = find_carriers(lease->session(), ref);
    EXPECT_TRUE(found);
    return found ? found->size() : 0;
  }
  // Schedules destruction and lets the waiting period pass.
  void make_due(const std::string& key) {
    ASSERT_TRUE(admin_->schedule_destruction(key, kMinimumWait));
    clock_.advance(std::chrono::seconds(kMinimumWait + 1));
  }

  test::TempDir dir_;
  test::FakeClock clock_;
  p11::SessionPool& pool_ = test::SharedToken::get().pool();
  KeyRegistry registry_;
  TokenKeyVault vault_{pool_};
  std::unique_ptr<StateStore> store_;
  std::unique_ptr<KeyAdmin> admin_;
};

}  // namespace

TEST_F(Destruction, DestroyingAKeyDestroysEveryObjectCarryingItsIdAndLabel) {
  const auto k = name("copied");
  auto key = admin_->create_key(k, Algorithm::aes_256_gcm, nobody());
  ASSERT_TRUE(key) << key.error().message;
  const ObjectRef v1 = (*key)->versions[0].object;
  plant_object(v1);
  ASSERT_EQ(carriers(v1), 2u);
  // Two objects answer for one version: not "missing", and not taken for the one custody made.
  auto exists = vault_.exists(v1);
  ASSERT_FALSE(exists) << "exists() answered " << *exists << " for a version with two objects";
  auto report = admin_->reconcile().value();
  ASSERT_EQ(report.altered.size(), 1u);
  EXPECT_NE(report.altered[0].find("2 token objects"), std::string::npos) << report.altered[0];

  make_due(k);
  auto destroyed = admin_->destroy_due();
  ASSERT_TRUE(destroyed) << destroyed.error().message;
  ASSERT_EQ(*destroyed, std::vector<std::string>{k});
  EXPECT_EQ(carriers(v1), 0u) << "the key was called destroyed with an object carrying its id left in the token";
  EXPECT_FALSE(mentions(admin_->reconcile().value(), k));
}

TEST_F(Destruction, AnObjectTheTokenWillNotDestroyKeepsTheKeyPendingAndIsReported) {
  const auto k = name("stuck");
  auto key = admin_->create_key(k, Algorithm::aes_256_gcm, nobody());
  ASSERT_TRUE(key) << key.error().message;
  const ObjectRef v1 = (*key)->versions[0].object;
  plant_object(v1, /*destroyable=*/false);

  make_due(k);
  auto destroyed = admin_->destroy_due();
  ASSERT_TRUE(destroyed) << destroyed.error().message;
  EXPECT_TRUE(destroyed->empty()) << "a key with an object left in the token was called destroyed";
  EXPECT_EQ(registry_.find(k)->state, KeyState::pending_destruction);
  auto keys = store_->load_keys().value();
  for (const auto& stored : keys) {
    if (stored.name == k) {
      EXPECT_EQ(stored.state, KeyState::pending_destruction);
    }
  }
  EXPECT_TRUE(store_->pending_intents().value().empty()) << "a failed destruction must not block the next start";
  EXPECT_EQ(carriers(v1), 1u);
  EXPECT_TRUE(mentions(admin_->reconcile().value(), k));
  // And direct: the vault says the object is not destroyed.
  auto again = vault_.destroy(v1);
  ASSERT_FALSE(again);
  EXPECT_NE(again.error().message.find("not destroyed"), std::string::npos) << again.error().message;
}

TEST_F(Destruction, ReconcileReportsAnObjectADestroyedVersionStillNames) {
  const auto k = name("revived");
  auto key = admin_->create_key(k, Algorithm::aes_256_gcm, nobody());
  ASSERT_TRUE(key) << key.error().message;
  const ObjectRef v1 = (*key)->versions[0].object;
  make_due(k);
  ASSERT_EQ(admin_->destroy_due().value(), std::vector<std::string>{k});
  ASSERT_FALSE(mentions(admin_->reconcile().value(), k));
  // An object with the shredded version's id and label (a copy restored from a token backup).
  plant_object(v1);
  auto report = admin_->reconcile().value();
  ASSERT_EQ(report.undestroyed.size(), 1u) << "reconcile skipped a destroyed version";
  EXPECT_NE(report.undestroyed[0].find(k), std::string::npos) << report.undestroyed[0];
  EXPECT_FALSE(report.clean());
  ASSERT_TRUE(vault_.destroy(v1));
}

class ImportJobDestruction : public Destruction {
 protected:
  void SetUp() override {
    Destruction::SetUp();
    const auto offered = importer_.offered_methods();
    for (const auto& m : offered)
      if (find_import_method(m)->rsa) method_ = m;
    ASSERT_FALSE(method_.empty()) << "the token offers no rsa-* import method";
    jobs_ = std::make_unique<ImportJobs>(*store_, importer_, registry_, *admin_, clock_);
  }
  StoredJob create_job() {
    boost::json::object params{{"key_name", name("byok")},
                               {"algorithm", "aes-256-gcm"},
                               {"method", method_},
                               {"expires_in_seconds", 60}};
    auto job = jobs_->create(params, {});
    EXPECT_TRUE(job) << job.error().message;
    return *job;
  }
  TokenImporter importer_{pool_};
  std::string method_;
  std::unique_ptr<ImportJobs> jobs_;
};

TEST_F(ImportJobDestruction, AnExpiredJobLosesItsPairAndEveryObjectCarryingItsId) {
  const auto job = create_job();
  ASSERT_EQ(carriers(job.wrapping), 2u);  // the RSA pair
  plant_object(job.wrapping);
  clock_.advance(61s);
  EXPECT_EQ(jobs_->expire_due(), std::vector<std::string>{job.id});
  EXPECT_EQ(carriers(job.wrapping), 0u) << "an object with the job key's id outlived the job";
  EXPECT_TRUE(jobs_->undestroyed_pairs().empty());
}

TEST_F(ImportJobDestruction, AJobWhosePairCannotBeDestroyedStaysActiveWithAnAlarm) {
  const auto job = create_job();
  plant_object(job.wrapping, /*destroyable=*/false);
  clock_.advance(61s);
  EXPECT_TRUE(jobs_->expire_due().empty()) << "a job was marked expired with its key still in the token";
  EXPECT_EQ(jobs_->get(job.id).value().state, "active");
  const auto stored_jobs = store_->load_jobs().value();
  for (const auto& stored : stored_jobs) {
    if (stored.id == job.id) {
      EXPECT_EQ(stored.state, "active");
    }
  }
  const auto alarms = jobs_->undestroyed_pairs();
  ASSERT_EQ(alarms.size(), 1u);
  EXPECT_NE(alarms[0].find(job.wrapping.label), std::string::npos) << alarms[0];
  // Past its expiry it takes no import, whatever its state says.
  auto import = jobs_->import(job.id, Bytes(424, 0), std::nullopt);
  ASSERT_FALSE(import);
  EXPECT_EQ(import.error().code, Code::failed_precondition);
}
