// Key lifecycle in-process on a real SoftHSMv2 token, with a fake clock for waiting periods.
#include <gtest/gtest.h>

#include <boost/json.hpp>

#include <atomic>
#include <stdexcept>
#include <thread>

#include "daemon/core/keys/data_plane.h"
#include "daemon/core/keys/key_admin.h"
#include "daemon/core/keys/lifecycle_scheduler.h"
#include "daemon/core/keys/token_key_vault.h"
#include "tests/integration/test_keys.h"
#include "tests/support/fake_clock.h"

using namespace custody;
using namespace custody::core;
using namespace std::chrono_literals;

namespace {

constexpr std::int64_t kWeek = 7 * 86400;

class Lifecycle : public ::testing::Test {
 protected:
  void SetUp() override {
    store_ = StateStore::open(dir_.path() + "/state.db").value();
    audit_ = AuditLog::open(dir_.path() + "/audit.jsonl", AuditDurability::none, clock_).value();
    admin_ = std::make_unique<KeyAdmin>(registry_, *store_, vault_, clock_, LifecycleSettings{kWeek});
    meter_ = std::make_unique<UsageMeter>(*store_);
    plane_ = std::make_unique<DataPlane>(registry_, vault_, meter_.get());
    scheduler_ = std::make_unique<LifecycleScheduler>(*admin_, registry_, *meter_, *audit_, clock_, 1h);
  }
  // Unique per test: every test shares the one token.
  std::string name(const std::string& base) {
    std::string s = base + "-" + std::to_string(::getpid()) + "-" +
                    ::testing::UnitTest::GetInstance()->current_test_info()->name();
    for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return s.substr(0, 60);
  }
  Policy everyone() {
    return *parse_policy(boost::json::parse(R"([{"uid":1000,"operations":["wrap","unwrap","datakey","rewrap","derive"]}])"));
  }
  Outcome<Sealed> wrap(const std::string& key, const std::string& text = "payload") {
    AuditFacts f;
    return plane_->wrap(peer_, key, to_bytes(text), {}, f);
  }
  Outcome<Secret> unwrap(const std::string& key, const Bytes& blob) {
    AuditFacts f;
    return plane_->unwrap(peer_, key, blob, {}, f);
  }
  std::vector<std::string> audit_types() {
    std::vector<std::string> out;
    std::istringstream in(test::read_file(dir_.path() + "/audit.jsonl"));
    for (std::string line; std::getline(in, line);)
      out.emplace_back(boost::json::parse(line).at("type").as_string());
    return out;
  }

  test::TempDir dir_;
  test::FakeClock clock_;
  KeyRegistry registry_;
  TokenKeyVault vault_{test::SharedToken::get().pool()};
  std::unique_ptr<StateStore> store_;
  std::unique_ptr<AuditLog> audit_;
  std::unique_ptr<KeyAdmin> admin_;
  std::unique_ptr<UsageMeter> meter_;
  std::unique_ptr<DataPlane> plane_;
  std::unique_ptr<LifecycleScheduler> scheduler_;
  Peer peer_{1000, 1000, 1};
};

}  // namespace

TEST_F(Lifecycle, DisabledKeysRefuseEveryOperationUntilEnabled) {
  const auto k = name("dis");
  ASSERT_TRUE(admin_->create_key(k, Algorithm::aes_256_gcm, everyone()));
  auto blob = wrap(k);
  ASSERT_TRUE(blob);
  ASSERT_TRUE(admin_->set_enabled(k, false));
  auto refused = wrap(k);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, Code::failed_precondition);
  EXPECT_NE(refused.error().message.find("disabled"), std::string::npos);
  EXPECT_EQ(unwrap(k, blob->ciphertext).error().code, Code::failed_precondition);
  ASSERT_TRUE(admin_->set_enabled(k, true));
  EXPECT_TRUE(unwrap(k, blob->ciphertext));
}

TEST_F(Lifecycle, MinimumDecryptVersionRetiresOlderVersions) {
  const auto k = name("min");
  ASSERT_TRUE(admin_->create_key(k, Algorithm::aes_256_gcm, everyone()));
  auto v1 = wrap(k);
  ASSERT_TRUE(admin_->rotate_key(k));
  auto v2 = wrap(k);
  ASSERT_EQ(v2->version, 2u);
  EXPECT_TRUE(unwrap(k, v1->ciphertext));
  auto moved = [&] {
    AuditFacts f;
    return plane_->rewrap(peer_, k, v1->ciphertext, {}, f);
  }();
  ASSERT_TRUE(moved);
  ASSERT_TRUE(admin_->set_min_decrypt_version(k, 2));
  auto retired = unwrap(k, v1->ciphertext);
  ASSERT_FALSE(retired);
  EXPECT_EQ(retired.error().code, Code::failed_precondition);
  EXPECT_TRUE(unwrap(k, moved->ciphertext));
  EXPECT_FALSE(admin_->set_min_decrypt_version(k, 1));  // no way back
  EXPECT_FALSE(admin_->set_min_decrypt_version(k, 3));  // no such version yet
}

TEST_F(Lifecycle, ScheduledDestructionShredsEveryVersionWhenDue) {
  const auto k = name("shred");
  ASSERT_TRUE(admin_->create_key(k, Algorithm::aes_256_gcm, everyone()));
  ASSERT_TRUE(admin_->rotate_key(k));
  auto blob = wrap(k);
  auto key = registry_.find(k);
  EXPECT_EQ(admin_->schedule_destruction(k, kWeek - 1).error().code, Code::invalid_argument);
  ASSERT_TRUE(admin_->schedule_destruction(k, kWeek));
  EXPECT_EQ(registry_.find(k)->state, KeyState::pending_destruction);
  const auto uses_before = plane_->pending_destruction_uses();
  EXPECT_EQ(unwrap(k, blob->ciphertext).error().code, Code::failed_precondition);
  EXPECT_EQ(plane_->pending_destruction_uses(), uses_before + 1);

  clock_.advance(std::chrono::seconds(kWeek - 10));
  scheduler_->run_once();
  EXPECT_EQ(registry_.find(k)->state, KeyState::pending_destruction);
  for (const auto& v : key->versions) EXPECT_TRUE(*vault_.exists(v.object));

  clock_.advance(20s);
  scheduler_->run_once();
  EXPECT_EQ(registry_.find(k)->state, KeyState::destroyed);
  for (const auto& v : key->versions) EXPECT_FALSE(*vault_.exists(v.object)) << v.object.label;
  // Even a state that still named the old objects could not decrypt: they are gone from the token.
  EXPECT_FALSE(vault_.gcm_decrypt(key->versions[1].object, Bytes(12), {}, Bytes(32)));
  EXPECT_EQ(audit_types().back(), "lifecycle.destroy");
  // The state survives a restart as destroyed.
  auto reloaded = store_->load_keys();
  bool found = false;
  for (const auto& rk : *reloaded) {
    if (rk.name != k) continue;
    found = true;
    EXPECT_EQ(rk.state, KeyState::destroyed);
  }
  EXPECT_TRUE(found);
}

TEST_F(Lifecycle, CancelledDestructionLeavesTheKeyDisabled) {
  const auto k = name("cancel");
  ASSERT_TRUE(admin_->create_key(k, Algorithm::aes_256_gcm, everyone()));
  ASSERT_TRUE(admin_->schedule_destruction(k, kWeek));
  ASSERT_TRUE(admin_->cancel_destruction(k));
  EXPECT_EQ(registry_.find(k)->state, KeyState::disabled);
  clock_.advance(std::chrono::seconds(2 * kWeek));
  scheduler_->run_once();
  EXPECT_EQ(registry_.find(k)->state, KeyState::disabled);
  EXPECT_TRUE(*vault_.exists(registry_.find(k)->versions[0].object));
  EXPECT_EQ(admin_->cancel_destruction(k).error().code, Code::failed_precondition);
}

TEST_F(Lifecycle, RotatesByPeriod) {
  const auto k = name("period");
  ASSERT_TRUE(admin_->create_key(k, Algorithm::hmac_sha256, everyone(), RotationPolicy{86400, kDefaultUsageLimit}));
  scheduler_->run_once();
  EXPECT_EQ(registry_.find(k)->current_version, 1u);
  clock_.advance(86400s);
  scheduler_->run_once();
  auto key = registry_.find(k);
  ASSERT_EQ(key->current_version, 2u);
  EXPECT_EQ(key->versions[1].reason, "auto-rotated:period");
  EXPECT_EQ(audit_types().back(), "lifecycle.auto-rotate");
  scheduler_->run_once();  // the new version is fresh: nothing more to do
  EXPECT_EQ(registry_.find(k)->current_version, 2u);
}

TEST_F(Lifecycle, RotatesByUsageAndCountsSurviveARestart) {
  const auto k = name("usage");
  ASSERT_TRUE(admin_->create_key(k, Algorithm::aes_256_gcm, everyone(), RotationPolicy{std::nullopt, 40}));
  bool signalled = false;
  meter_->on_limit([&](const std::string& key) { signalled = key == k; });
  for (int i = 0; i < 39; ++i) ASSERT_TRUE(wrap(k));
  EXPECT_FALSE(signalled);
  ASSERT_TRUE(wrap(k));
  EXPECT_TRUE(signalled);
  // A restart (a new meter over the same store) never counts fewer than were made.
  UsageMeter after_crash(*store_);
  EXPECT_GE(after_crash.used(k, 1).value(), 40u);
  scheduler_->run_once();
  auto key = registry_.find(k);
  ASSERT_EQ(key->current_version, 2u);
  EXPECT_EQ(key->versions[1].reason, "auto-rotated:usage");
  EXPECT_EQ(wrap(k)->version, 2u);
}

TEST_F(Lifecycle, ReconciliationReportsMissingAlteredAndStrayObjects) {
  const auto k = name("recon");
  ASSERT_TRUE(admin_->create_key(k, Algorithm::aes_256_gcm, everyone()));
  ASSERT_TRUE(admin_->rotate_key(k));
  auto before = admin_->reconcile();
  ASSERT_TRUE(before);
  auto key = registry_.find(k);
  // Behind custody's back: v1's object destroyed, a stray custody object made, and a version
  // registered whose object has another role.
  ASSERT_TRUE(vault_.destroy(key->versions[0].object));
  auto stray = test::make_known_key(Algorithm::aes_256_gcm, Bytes(32, 7), "custody:stray-" + k + ":v1");
  Key altered = *key;
  altered.name = name("recon2");
  altered.versions.resize(1);
  altered.versions[0].object = test::make_known_key(Algorithm::hmac_sha256, Bytes(32, 9), "custody:" + altered.name + ":v1");
  registry_.put(altered);  // says aes-256-gcm, but the object is an HMAC key
  auto report = admin_->reconcile();
  ASSERT_TRUE(report);
  auto contains = [](const std::vector<std::string>& list, const std::string& what) {
    for (const auto& item : list)
      if (item.find(what) != std::string::npos) return true;
    return false;
  };
  EXPECT_TRUE(contains(report->missing, k + " v1"));
  EXPECT_FALSE(contains(report->missing, k + " v2"));
  EXPECT_TRUE(contains(report->altered, altered.name + " v1"));
  EXPECT_TRUE(contains(report->strays, "custody:stray-" + k));
  EXPECT_FALSE(contains(report->strays, "custody:" + k + ":v2"));
}

TEST_F(Lifecycle, RecoveryUndoesAnUncommittedCreateAndFinishesAStartedDestruction) {
  // A create that generated its object and then crashed before committing.
  const auto k = name("crash");
  ObjectRef orphan{Bytes(16, 0x5a), object_label(k, 1)};
  orphan.id[0] = static_cast<std::uint8_t>(::getpid());
  ASSERT_TRUE(store_->begin_intent(Intent{0, "create-key", k, 1, orphan, 0}));
  ASSERT_TRUE(vault_.generate(Algorithm::aes_256_gcm, orphan));
  // A destruction that shredded one of two versions and then crashed.
  const auto d = name("half");
  ASSERT_TRUE(admin_->create_key(d, Algorithm::aes_256_gcm, everyone()));
  ASSERT_TRUE(admin_->rotate_key(d));
  auto key = registry_.find(d);
  ASSERT_TRUE(store_->begin_intent(Intent{0, "destroy-key", d, 0, {}, 0}));
  ASSERT_TRUE(vault_.destroy(key->versions[0].object));

  auto done = admin_->recover();
  ASSERT_TRUE(done);
  EXPECT_EQ(done->size(), 2u);
  EXPECT_FALSE(*vault_.exists(orphan));
  EXPECT_FALSE(registry_.find(k));
  EXPECT_EQ(registry_.find(d)->state, KeyState::destroyed);
  EXPECT_FALSE(*vault_.exists(key->versions[1].object));
  EXPECT_TRUE(store_->pending_intents()->empty());
  EXPECT_TRUE(admin_->recover()->empty());
}

TEST_F(Lifecycle, ATaskThatThrowsIsLoggedAndTheSchedulerGoesOn) {
  const auto k = name("throwing-task");
  ASSERT_TRUE(admin_->create_key(k, Algorithm::hmac_sha256, everyone(), RotationPolicy{86400, kDefaultUsageLimit}));
  std::atomic<int> throws{0}, after{0};
  scheduler_->add_task([&] {
    ++throws;
    throw std::runtime_error("a task failed badly");
  });
  scheduler_->add_task([&] { ++after; });
  clock_.advance(86400s);
  // In one pass: the task after the throwing one runs, and so does the rotation that fell due.
  EXPECT_NO_THROW(scheduler_->run_once());
  EXPECT_EQ(after.load(), 1);
  EXPECT_EQ(registry_.find(k)->current_version, 2u);
  // On the scheduler's own thread (before: std::terminate): it survives and keeps passing.
  scheduler_->start();
  for (int pass = 2; pass <= 3; ++pass) {
    scheduler_->wake();
    const auto deadline = std::chrono::steady_clock::now() + 5s;
    while (after.load() < pass && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
    ASSERT_EQ(after.load(), pass) << "the scheduler thread stopped after a task threw";
  }
  EXPECT_GE(throws.load(), 3);
  scheduler_->stop();
}
