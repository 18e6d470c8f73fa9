// The PostgreSQL state store against a real PostgreSQL 15 cluster (tests/support/postgres_cluster.h).
// First the contract both stores keep, as typed tests run against SQLite and PostgreSQL alike, so
// the two implementations are proven to behave the same; then what only the fleet store has:
// usage reservations racing from several connections, leases that move when their holder's
// connection dies, the change feed, versioned migrations, settings (password file, no inline
// password, sslmode passthrough), and a failed query or dropped connection surfacing as an
// error, never as an empty success.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <thread>

#include <openssl/evp.h>
#include <openssl/pem.h>

#include <boost/json.hpp>
#include <map>
#include <mutex>
#include <set>

#include "cli/approval_signer.h"
#include "common/base64.h"
#include "common/pem.h"
#include "daemon/core/admin/admin_requests.h"
#include "daemon/core/keys/usage_meter.h"
#include "daemon/core/state/postgres/pg_change_feed.h"
#include "daemon/core/state/postgres/pg_migrations.h"
#include "daemon/core/state/postgres/postgres_state_store.h"
#include "daemon/core/state/state_store.h"
#include "tests/support/fake_clock.h"
#include "tests/support/postgres_cluster.h"
#include "tests/support/softhsm_token.h"
#include "tests/support/store_approval.h"

using namespace custody;
using namespace custody::core;
using namespace custody::test;
using namespace std::chrono_literals;

namespace {

// One cluster for the whole binary (initdb costs about a second); each test gets a fresh database.
class Cluster : public ::testing::Environment {
 public:
  static PostgresCluster* get() { return cluster_.get(); }
  static const std::string& why_not() { return why_not_; }
  void SetUp() override {
    if (auto reason = PostgresCluster::unavailable_reason(); !reason.empty()) {
      why_not_ = reason;
      return;
    }
    auto started = PostgresCluster::start();
    ASSERT_TRUE(started) << started.error();
    cluster_ = std::move(*started);
  }
  void TearDown() override { cluster_.reset(); }

 private:
  static inline std::unique_ptr<PostgresCluster> cluster_;
  static inline std::string why_not_;
};
[[maybe_unused]] auto* const kCluster = ::testing::AddGlobalTestEnvironment(new Cluster);

std::string fresh_database() {
  static std::atomic<int> next{0};
  const std::string name = "custody_test_" + std::to_string(::getpid()) + "_" + std::to_string(next++);
  auto made = Cluster::get()->create_database(name);
  EXPECT_TRUE(made) << made.error();
  return name;
}

#define REQUIRE_CLUSTER()                                    \
  do {                                                       \
    if (!Cluster::get()) GTEST_SKIP() << Cluster::why_not(); \
  } while (0)

Key make_key(const std::string& name, std::uint32_t versions) {
  Key k;
  k.name = name;
  k.current_version = versions;
  k.created_at = 1700000000;
  for (std::uint32_t v = 1; v <= versions; ++v) {
    KeyVersion kv;
    kv.version = v;
    kv.created_at = 1700000000 + v;
    kv.reason = v == 1 ? "created" : "rotated";
    // A zero byte and bytes above 0x7f: the object id is binary, not text.
    kv.object.id = Bytes{0x00, 0xff, 0x80, static_cast<std::uint8_t>(v), 0x00, 0x27, 0x5c};
    kv.object.label = object_label(name, v);
    k.versions.push_back(kv);
  }
  return k;
}

StoredRequest make_request(const std::string& id, std::int64_t created_at) {
  StoredRequest r;
  r.id = id;
  r.operation = "rotate-key";
  r.params = R"({"name":"k"})";
  r.state = "pending";
  r.created_at = created_at;
  r.expires_at = created_at + 3600;
  r.required = 2;
  r.challenge = "custody-admin-v1\n" + id;
  r.proposer_uid = 1000;
  return r;
}

StoredJob make_job(const std::string& id, std::int64_t created_at) {
  StoredJob j;
  j.id = id;
  j.key_name = "imported";
  j.algorithm = "aes-256-gcm";
  j.method = "rsa-oaep-3072-sha256-aes-256";
  j.state = "active";
  j.created_at = created_at;
  j.expires_at = created_at + 600;
  j.wrapping = ObjectRef{Bytes{1, 0, 2}, "custody-import:" + id};
  j.public_key = "-----BEGIN PUBLIC KEY-----";
  j.policy = "[]";
  return j;
}

// --- the two backends of the typed tests ---

struct SqliteBackend {
  using Store = StateStore;
  static constexpr const char* kName = "sqlite";
  TempDir dir;
  bool available() const { return true; }
  Expected<std::unique_ptr<StateStore>, std::string> open() { return StateStore::open(dir.path() + "/state.db"); }
};

struct PostgresBackend {
  using Store = PostgresStateStore;
  static constexpr const char* kName = "postgresql";
  std::string database;
  bool available() {
    if (!Cluster::get()) return false;
    if (database.empty()) database = fresh_database();
    return true;
  }
  Expected<std::unique_ptr<PostgresStateStore>, std::string> open() {
    return PostgresStateStore::open(Cluster::get()->settings(database), "test-host");
  }
};

template <class Backend>
class StateStoreContract : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!backend_.available()) GTEST_SKIP() << Cluster::why_not();
    auto opened = backend_.open();
    ASSERT_TRUE(opened) << opened.error();
    store_ = std::move(*opened);
  }
  typename Backend::Store& store() { return *store_; }
  std::unique_ptr<typename Backend::Store> reopen() {
    auto opened = backend_.open();
    EXPECT_TRUE(opened) << opened.error();
    return opened ? std::move(*opened) : nullptr;
  }
  Backend backend_;
  std::unique_ptr<typename Backend::Store> store_;
};

struct BackendName {
  template <class T>
  static std::string GetName(int) {
    return T::kName;
  }
};
using Backends = ::testing::Types<SqliteBackend, PostgresBackend>;
TYPED_TEST_SUITE(StateStoreContract, Backends, BackendName);

}  // namespace

TYPED_TEST(StateStoreContract, KeysComeBackExactlyAsStoredInByteOrderOfTheirNames) {
  // Byte order: '-' < '.' < digits < '_' < letters; a locale collation orders these otherwise,
  // and the version rows would no longer line up with their keys.
  const std::vector<std::string> names = {"key_b", "key.a", "key-10", "key9", "key-9", "a"};
  for (const auto& n : names) {
    Key k = make_key(n, 2);
    k.min_decrypt_version = 2;
    k.rotation.period_seconds = 86400;
    k.rotation.usage_limit = 1u << 20;
    k.policy.rules.push_back(PolicyRule{1000u, std::nullopt, std::nullopt, std::nullopt, 0x3});
    k.versions[1].kcv = "a1b2c3";
    ASSERT_TRUE(this->store().insert_key(k, 0)) << n;
  }
  Key pending = make_key("pending", 1);
  pending.state = KeyState::pending_destruction;
  pending.destroy_at = 1800000000;
  pending.algorithm = Algorithm::hmac_sha256;
  ASSERT_TRUE(this->store().insert_key(pending, 0));

  auto reopened = this->reopen();
  ASSERT_TRUE(reopened);
  auto keys = reopened->load_keys();
  ASSERT_TRUE(keys) << keys.error().message;
  std::vector<std::string> sorted = names;
  sorted.push_back("pending");
  std::sort(sorted.begin(), sorted.end());
  ASSERT_EQ(keys->size(), sorted.size());
  for (std::size_t i = 0; i < sorted.size(); ++i) {
    const Key& k = (*keys)[i];
    SCOPED_TRACE(k.name);
    EXPECT_EQ(k.name, sorted[i]);
    const Key expected = make_key(k.name, k.name == "pending" ? 1 : 2);
    ASSERT_EQ(k.versions.size(), expected.versions.size());
    for (std::size_t v = 0; v < k.versions.size(); ++v) {
      EXPECT_EQ(k.versions[v].object.id, expected.versions[v].object.id);
      EXPECT_EQ(k.versions[v].object.label, expected.versions[v].object.label);
      EXPECT_EQ(k.versions[v].created_at, expected.versions[v].created_at);
      EXPECT_EQ(k.versions[v].reason, expected.versions[v].reason);
    }
    if (k.name == "pending") {
      EXPECT_EQ(k.state, KeyState::pending_destruction);
      EXPECT_EQ(k.destroy_at, std::optional<std::int64_t>(1800000000));
      EXPECT_EQ(k.algorithm, Algorithm::hmac_sha256);
      EXPECT_FALSE(k.rotation.period_seconds);
      EXPECT_EQ(k.rotation.usage_limit, kDefaultUsageLimit);
      EXPECT_FALSE(k.versions[0].kcv);
      EXPECT_TRUE(k.policy.rules.empty());
    } else {
      EXPECT_EQ(k.state, KeyState::enabled);
      EXPECT_FALSE(k.destroy_at);
      EXPECT_EQ(k.min_decrypt_version, 2u);
      EXPECT_EQ(k.rotation.period_seconds, std::optional<std::int64_t>(86400));
      EXPECT_EQ(k.rotation.usage_limit, 1u << 20);
      EXPECT_EQ(k.versions[1].kcv, std::optional<std::string>("a1b2c3"));
      ASSERT_EQ(k.policy.rules.size(), 1u);
      EXPECT_EQ(k.policy.rules[0].uid, std::optional<uid_t>(1000));
      EXPECT_EQ(k.policy.rules[0].operations, 0x3);
    }
  }
}

TYPED_TEST(StateStoreContract, AChangeCommitsTogetherWithItsIntentRequestAndImportJob) {
  auto& s = this->store();
  ASSERT_TRUE(s.insert_job(make_job("job-1", 10), "req-job"));
  auto intent = s.begin_intent(Intent{0, "create-key", "imported", 1, {Bytes{9, 9}, "custody:imported:v1"}, 5});
  ASSERT_TRUE(intent) << intent.error().message;
  ASSERT_TRUE(s.insert_key(make_key("imported", 1), *intent, "req-create", "job-1"));
  EXPECT_TRUE(s.pending_intents().value().empty());
  EXPECT_TRUE(s.applied("req-create").value());
  EXPECT_TRUE(s.applied("req-job").value());
  EXPECT_FALSE(s.applied("req-other").value());
  EXPECT_EQ(s.load_jobs().value().at(0).state, "used");

  auto rotate = s.begin_intent(Intent{0, "rotate-key", "imported", 2, {Bytes{9, 8}, "custody:imported:v2"}, 6});
  ASSERT_TRUE(rotate);
  ASSERT_TRUE(s.add_version("imported", make_key("imported", 2).versions[1], *rotate, "req-rotate"));
  EXPECT_TRUE(s.pending_intents().value().empty());
  EXPECT_TRUE(s.applied("req-rotate").value());
  auto keys = s.load_keys().value();
  ASSERT_EQ(keys.size(), 1u);
  EXPECT_EQ(keys[0].current_version, 2u);
}

TYPED_TEST(StateStoreContract, AFailedChangeLeavesEverythingAsItWas) {
  auto& s = this->store();
  auto intent = s.begin_intent(Intent{0, "create-key", "k", 1, {Bytes{1}, "custody:k:v1"}, 5});
  ASSERT_TRUE(intent);
  // The import job it names does not exist: the whole change fails, the intent stays for recovery.
  auto inserted = s.insert_key(make_key("k", 1), *intent, "req-1", "job-missing");
  ASSERT_FALSE(inserted);
  EXPECT_EQ(inserted.error().code, Code::not_found) << inserted.error().message;
  EXPECT_TRUE(s.load_keys().value().empty());
  EXPECT_FALSE(s.applied("req-1").value());
  ASSERT_EQ(s.pending_intents().value().size(), 1u);
  // A key stored twice, and a request applied twice, are refused and change nothing.
  ASSERT_TRUE(s.insert_key(make_key("k", 1), *intent, "req-1"));
  EXPECT_FALSE(s.insert_key(make_key("k", 1), 0));
  EXPECT_FALSE(s.set_state("k", KeyState::disabled, std::nullopt, "req-1"));
  EXPECT_EQ(s.load_keys().value().at(0).state, KeyState::enabled);
  // A version for a key that does not exist.
  EXPECT_FALSE(s.add_version("nope", make_key("nope", 2).versions[1], 0));
  EXPECT_EQ(s.load_keys().value().size(), 1u);
}

TYPED_TEST(StateStoreContract, ChangesToAMissingRowAreNotFound) {
  auto& s = this->store();
  ASSERT_TRUE(s.insert_key(make_key("k", 1), 0));
  for (auto r : {s.set_state("nope", KeyState::disabled, std::nullopt), s.set_min_decrypt_version("nope", 1),
                 s.set_policy("nope", Policy{}), s.finish_request("nope", "expired", std::nullopt),
                 s.set_job_state("nope", "expired"), s.set_encryptions("k", 9, 1)}) {
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, Code::not_found) << r.error().message;
  }
  // Applied to an existing key, each change shows in the next load.
  ASSERT_TRUE(s.set_state("k", KeyState::pending_destruction, 1900000000));
  ASSERT_TRUE(s.set_min_decrypt_version("k", 1));
  Policy p;
  p.rules.push_back(PolicyRule{std::nullopt, 50u, std::nullopt, std::nullopt, 0x1});
  ASSERT_TRUE(s.set_policy("k", p));
  auto k = s.load_keys().value().at(0);
  EXPECT_EQ(k.state, KeyState::pending_destruction);
  EXPECT_EQ(k.destroy_at, std::optional<std::int64_t>(1900000000));
  ASSERT_EQ(k.policy.rules.size(), 1u);
  EXPECT_EQ(k.policy.rules[0].gid, std::optional<gid_t>(50));
}

TYPED_TEST(StateStoreContract, TheStoredUsageCountNeverGoesDown) {
  auto& s = this->store();
  ASSERT_TRUE(s.insert_key(make_key("k", 1), 0));
  ASSERT_TRUE(s.set_encryptions("k", 1, 1000));
  ASSERT_TRUE(s.set_encryptions("k", 1, 40));
  EXPECT_EQ(s.encryptions("k", 1).value(), 1000u);
  ASSERT_TRUE(s.set_encryptions("k", 1, 1001));
  EXPECT_EQ(s.encryptions("k", 1).value(), 1001u);
  auto missing = s.encryptions("k", 2);
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, Code::not_found);
}

TYPED_TEST(StateStoreContract, MarkDestroyedRefusesAKeyWithAVersionItWasNotGiven) {
  auto& s = this->store();
  ASSERT_TRUE(s.insert_key(make_key("k", 3), 0));
  auto intent = s.begin_intent(Intent{0, "destroy-key", "k", 0, {}, 5});
  ASSERT_TRUE(intent);
  auto marked = s.mark_destroyed("k", {1, 2}, *intent);
  ASSERT_FALSE(marked);
  EXPECT_NE(marked.error().message.find("version 3"), std::string::npos) << marked.error().message;
  auto keys = s.load_keys().value();
  EXPECT_EQ(keys[0].state, KeyState::enabled);
  for (const auto& v : keys[0].versions) EXPECT_EQ(v.state, "enabled") << v.version;
  EXPECT_EQ(s.pending_intents().value().size(), 1u);
  ASSERT_TRUE(s.mark_destroyed("k", {1, 2, 3}, *intent));
  keys = s.load_keys().value();
  EXPECT_EQ(keys[0].state, KeyState::destroyed);
  for (const auto& v : keys[0].versions) EXPECT_EQ(v.state, "destroyed") << v.version;
  EXPECT_TRUE(s.pending_intents().value().empty());
}

TYPED_TEST(StateStoreContract, RequestsCarryTheirApprovalsAndOutcome) {
  auto& s = this->store();
  ASSERT_TRUE(s.insert_request(make_request("req-b", 20)));
  ASSERT_TRUE(s.insert_request(make_request("req-a", 10)));
  EXPECT_FALSE(s.insert_request(make_request("req-a", 10))) << "a request id is unique";
  ASSERT_TRUE(store_approval(s, "req-b", StoredApproval{"bob", "c2ln", 22}, "pending"));
  ASSERT_TRUE(store_approval(s, "req-b", StoredApproval{"alice", "c2ln2", 21}, "pending"));
  // Refused by the store itself (the request is still pending): nothing of it is kept.
  auto twice = store_approval(s, "req-b", StoredApproval{"alice", "again", 23}, "approved");
  EXPECT_FALSE(twice) << "one approval per operator";
  auto missing = store_approval(s, "req-none", StoredApproval{"alice", "x", 1}, "approved");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, Code::not_found);
  ASSERT_TRUE(s.finish_request("req-b", "executed", std::optional<std::string>(R"({"ok":true})")));
  auto reopened = this->reopen();
  ASSERT_TRUE(reopened);
  auto requests = reopened->load_requests().value();
  ASSERT_EQ(requests.size(), 2u);
  EXPECT_EQ(requests[0].id, "req-a");  // by creation time
  EXPECT_TRUE(requests[0].approvals.empty());
  EXPECT_FALSE(requests[0].outcome);
  const auto& b = requests[1];
  EXPECT_EQ(b.state, "executed");
  EXPECT_EQ(b.outcome, std::optional<std::string>(R"({"ok":true})"));
  EXPECT_EQ(b.challenge, "custody-admin-v1\nreq-b");
  EXPECT_EQ(b.required, 2u);
  EXPECT_EQ(b.proposer_uid, 1000u);
  EXPECT_EQ(b.expires_at, 20 + 3600);
  ASSERT_EQ(b.approvals.size(), 2u);
  EXPECT_EQ(b.approvals[0].operator_name, "alice");  // by approval time
  EXPECT_EQ(b.approvals[0].signature, "c2ln2");
  EXPECT_EQ(b.approvals[1].operator_name, "bob");
}

TYPED_TEST(StateStoreContract, ImportJobsComeBackAsStored) {
  auto& s = this->store();
  StoredJob kwp = make_job("job-2", 20);
  kwp.method = "aes-256-kwp";
  kwp.transport_key = "transport";
  kwp.public_key.reset();
  ASSERT_TRUE(s.insert_job(kwp, {}));
  ASSERT_TRUE(s.insert_job(make_job("job-1", 10), {}));
  ASSERT_TRUE(s.set_job_state("job-1", "expired"));
  auto jobs = s.load_jobs().value();
  ASSERT_EQ(jobs.size(), 2u);
  EXPECT_EQ(jobs[0].id, "job-1");
  EXPECT_EQ(jobs[0].state, "expired");
  EXPECT_EQ(jobs[0].wrapping.id, (Bytes{1, 0, 2}));
  EXPECT_EQ(jobs[0].public_key, std::optional<std::string>("-----BEGIN PUBLIC KEY-----"));
  EXPECT_FALSE(jobs[0].transport_key);
  EXPECT_EQ(jobs[1].transport_key, std::optional<std::string>("transport"));
  EXPECT_FALSE(jobs[1].public_key);
  EXPECT_EQ(jobs[1].expires_at, 620);
}

TYPED_TEST(StateStoreContract, IntentsListInOrderAndDrop) {
  auto& s = this->store();
  std::vector<std::int64_t> ids;
  for (int i = 0; i < 3; ++i) {
    auto id = s.begin_intent(Intent{0, "rotate-key", "k" + std::to_string(i), 2, {Bytes{0, 1}, "l"}, 100 + i});
    ASSERT_TRUE(id);
    ids.push_back(*id);
  }
  ASSERT_TRUE(s.drop_intent(ids[1]));
  auto pending = s.pending_intents().value();
  ASSERT_EQ(pending.size(), 2u);
  EXPECT_EQ(pending[0].id, ids[0]);
  EXPECT_EQ(pending[0].key_name, "k0");
  EXPECT_EQ(pending[0].object.id, (Bytes{0, 1}));
  EXPECT_EQ(pending[0].created_at, 100);
  EXPECT_EQ(pending[1].key_name, "k2");
}

TYPED_TEST(StateStoreContract, MetaIsFixedAtFirstUse) {
  EXPECT_EQ(this->store().meta("instance_id", "first").value(), "first");
  EXPECT_EQ(this->store().meta("instance_id", "second").value(), "first");
  auto reopened = this->reopen();
  ASSERT_TRUE(reopened);
  EXPECT_EQ(reopened->meta("instance_id", "third").value(), "first");
}

// An approval is decided on the request as stored (by any connection), and a refused decision
// stores nothing.
TYPED_TEST(StateStoreContract, AnApprovalIsDecidedOnTheRequestAsStored) {
  ASSERT_TRUE(this->store().insert_request(make_request("r1", 100)));
  std::vector<std::size_t> seen;
  auto count_then = [&](std::size_t quorum) {
    return [&seen, quorum](const StoredRequest& stored) -> Outcome<std::string> {
      if (stored.state != "pending") return fail(Code::failed_precondition, "request is " + stored.state);
      seen.push_back(stored.approvals.size());
      return stored.approvals.size() + 1 >= quorum ? std::string("executing") : std::string("pending");
    };
  };
  auto first = this->store().approve_request("r1", StoredApproval{"alice", "sig-a", 101}, count_then(2));
  ASSERT_TRUE(first) << first.error().message;
  EXPECT_EQ(first->state, "pending");
  EXPECT_EQ(first->challenge, make_request("r1", 100).challenge);
  // Another connection (another daemon) that never loaded the request sees alice's approval.
  auto other = this->reopen();
  ASSERT_TRUE(other);
  auto refused = other->approve_request("r1", StoredApproval{"mallory", "x", 102}, [](const StoredRequest&) -> Outcome<std::string> {
    return fail(Code::permission_denied, "no operator named 'mallory'");
  });
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, Code::permission_denied);
  auto second = other->approve_request("r1", StoredApproval{"bob", "sig-b", 103}, count_then(2));
  ASSERT_TRUE(second) << second.error().message;
  EXPECT_EQ(second->state, "executing");
  ASSERT_EQ(second->approvals.size(), 2u);
  EXPECT_EQ(second->approvals[1].operator_name, "bob");
  EXPECT_EQ(seen, (std::vector<std::size_t>{0, 1}));
  EXPECT_EQ(this->store().approvers("r1").value(), (std::vector<std::string>{"alice", "bob"}));
  auto late = this->store().approve_request("r1", StoredApproval{"carol", "sig-c", 104}, count_then(2));
  ASSERT_FALSE(late);
  EXPECT_EQ(late.error().code, Code::failed_precondition);
  auto missing = this->store().approve_request("nope", StoredApproval{"alice", "x", 1}, count_then(2));
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, Code::not_found);
}

TYPED_TEST(StateStoreContract, ApproversListInTheOrderTheyApproved) {
  auto& s = this->store();
  ASSERT_TRUE(s.insert_request(make_request("req-1", 1)));
  // The same second: the order they were stored in decides.
  for (const char* op : {"carol", "alice", "bob"})
    ASSERT_TRUE(store_approval(s, "req-1", StoredApproval{op, "sig", 5}, "pending")) << op;
  EXPECT_EQ(s.approvers("req-1").value(), (std::vector<std::string>{"carol", "alice", "bob"}));
  EXPECT_TRUE(s.approvers("req-none").value().empty());
}

TYPED_TEST(StateStoreContract, RecoveryKeysAndBundlesComeBackAsStored) {
  auto& s = this->store();
  Key k = make_key("escrowed", 2);
  k.recovery = true;
  k.versions[1].origin = "recovered";
  std::vector<std::int64_t> intents;
  for (std::uint32_t v = 1; v <= 2; ++v) {
    auto id = s.begin_intent(Intent{0, "restore-key", "escrowed", v, k.versions[v - 1].object, 5});
    ASSERT_TRUE(id);
    intents.push_back(*id);
  }
  ASSERT_TRUE(s.insert_restored_key(k, intents));
  ASSERT_TRUE(s.insert_key(make_key("plain", 1), 0));
  EXPECT_TRUE(s.pending_intents().value().empty());
  auto keys = s.load_keys().value();
  ASSERT_EQ(keys.size(), 2u);
  EXPECT_TRUE(keys[0].recovery);
  EXPECT_EQ(keys[0].versions[1].origin, "recovered");
  EXPECT_FALSE(keys[1].recovery);

  EXPECT_EQ(s.recovery_bundle("bundle-1").value(), std::nullopt);
  ASSERT_TRUE(s.insert_recovery_bundle("bundle-1", 7, R"({"envelope":1})", "req-export"));
  EXPECT_FALSE(s.insert_recovery_bundle("bundle-2", 8, "{}", "req-export")) << "a request is applied once";
  EXPECT_EQ(s.recovery_bundle("bundle-1").value(), std::optional<std::string>(R"({"envelope":1})"));
  EXPECT_EQ(s.recovery_bundle("bundle-2").value(), std::nullopt);
  EXPECT_EQ(s.recovery_bundle_of_request("req-export").value(), std::optional<std::string>("bundle-1"));
  EXPECT_EQ(s.recovery_bundle_of_request("req-other").value(), std::nullopt);
  EXPECT_TRUE(s.applied("req-export").value());
}

// --- PostgreSQL only ---

namespace {

class PgStore : public ::testing::Test {
 protected:
  void SetUp() override {
    REQUIRE_CLUSTER();
    database_ = fresh_database();
    store_ = open_store();
    ASSERT_TRUE(store_);
  }
  std::unique_ptr<PostgresStateStore> open_store(const std::string& owner = "test-host") {
    auto opened = PostgresStateStore::open(Cluster::get()->settings(database_), owner);
    EXPECT_TRUE(opened) << opened.error();
    return opened ? std::move(*opened) : nullptr;
  }
  // Ends the server process behind a connection, as when its daemon's host dies.
  void terminate(int backend_pid) {
    auto r = Cluster::get()->execute(database_, "SELECT pg_terminate_backend(" + std::to_string(backend_pid) + ")");
    ASSERT_TRUE(r) << r.error();
  }
  std::string database_;
  std::unique_ptr<PostgresStateStore> store_;
};

}  // namespace

TEST_F(PgStore, ReservationsRacingFromSeveralConnectionsNeverExceedTheLimit) {
  ASSERT_TRUE(store_->insert_key(make_key("k", 1), 0));
  constexpr std::uint64_t kLimit = 2000;
  constexpr std::uint64_t kBlock = 7;  // 2000 is not a multiple: the last block is cut to fit
  std::vector<std::unique_ptr<PostgresStateStore>> daemons;
  for (int i = 0; i < 4; ++i) daemons.push_back(open_store());
  std::mutex mutex;
  std::vector<UsageBlock> blocks;
  std::vector<std::string> errors;
  std::vector<std::thread> threads;
  for (auto& d : daemons)
    threads.emplace_back([&, store = d.get()] {
      for (;;) {
        auto block = store->reserve_encryptions("k", 1, kBlock, kLimit);
        std::lock_guard lock(mutex);
        if (!block) {
          if (block.error().code != Code::resource_exhausted) errors.push_back(block.error().message);
          return;
        }
        blocks.push_back(*block);
      }
    });
  for (auto& t : threads) t.join();
  EXPECT_TRUE(errors.empty()) << errors.front();
  std::sort(blocks.begin(), blocks.end(), [](auto& a, auto& b) { return a.first < b.first; });
  // The blocks tile [0, limit) exactly: no count granted twice, none past the limit.
  std::uint64_t next = 0;
  for (const auto& b : blocks) {
    EXPECT_EQ(b.first, next);
    EXPECT_GE(b.count, 1u);
    EXPECT_LE(b.count, kBlock);
    next = b.first + b.count;
  }
  EXPECT_EQ(next, kLimit);
  EXPECT_EQ(store_->encryptions("k", 1).value(), kLimit);
}

TEST_F(PgStore, AReservationStartsFromTheDurableCountAndTellsExhaustionFromAMissingRow) {
  ASSERT_TRUE(store_->insert_key(make_key("k", 1), 0));
  ASSERT_TRUE(store_->set_encryptions("k", 1, 95));
  auto block = store_->reserve_encryptions("k", 1, 10, 100);
  ASSERT_TRUE(block) << block.error().message;
  EXPECT_EQ(block->first, 95u);
  EXPECT_EQ(block->count, 5u);
  auto exhausted = store_->reserve_encryptions("k", 1, 10, 100);
  ASSERT_FALSE(exhausted);
  EXPECT_EQ(exhausted.error().code, Code::resource_exhausted) << exhausted.error().message;
  auto missing = store_->reserve_encryptions("k", 2, 10, 100);
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, Code::not_found) << missing.error().message;
  EXPECT_EQ(store_->encryptions("k", 1).value(), 100u);
}

// Recovery at start takes a member's own intents and those of members that are gone, never a live
// member's change in flight; a change whose intent was taken that way fails instead of committing.
TEST_F(PgStore, RecoveryTakesOwnAndGoneMembersIntentsNeverALiveMembers) {
  auto a = open_store("host-a");
  auto c = open_store("host-c");
  ASSERT_TRUE(a && c);
  auto a_intent = a->begin_intent(Intent{0, "create-key", "k", 1, {Bytes{1}, "custody:k:v1"}, 5});
  ASSERT_TRUE(a_intent) << a_intent.error().message;
  auto c_intent = c->begin_intent(Intent{0, "create-key", "j", 1, {Bytes{2}, "custody:j:v1"}, 5});
  ASSERT_TRUE(c_intent) << c_intent.error().message;

  // A second store for host-c (host-c restarting while its old session lingers would look like
  // this) sees its own intent only; host-a is alive, so its intent is not offered.
  auto c_restarted = open_store("host-c");
  ASSERT_TRUE(c_restarted);
  auto refused = c_restarted->begin_intent(Intent{0, "create-key", "x", 1, {Bytes{3}, "custody:x:v1"}, 5});
  ASSERT_FALSE(refused) << "two sessions recording intents for one host id";
  EXPECT_NE(refused.error().message.find("host-c"), std::string::npos) << refused.error().message;
  ASSERT_TRUE(c->begin_recovery());
  auto seen = c->pending_intents();
  ASSERT_TRUE(seen) << seen.error().message;
  ASSERT_EQ(seen->size(), 1u);
  EXPECT_EQ(seen->front().key_name, "j");
  EXPECT_FALSE(c->recovers_for("host-a"));
  c->end_recovery();

  // host-a's session dies (its daemon's host is gone): host-c's recovery now takes its intent too,
  // and holds host-a's lease until it is done.
  terminate(a->backend_pid());
  std::vector<Intent> taken;
  for (auto deadline = std::chrono::steady_clock::now() + 10s; std::chrono::steady_clock::now() < deadline;) {
    ASSERT_TRUE(c->begin_recovery());
    auto now = c->pending_intents();
    ASSERT_TRUE(now) << now.error().message;
    if ((taken = *now).size() == 2) break;
    c->end_recovery();
    std::this_thread::yield();
  }
  ASSERT_EQ(taken.size(), 2u) << "the intent of a member that is gone was never offered";
  EXPECT_TRUE(c->recovers_for("host-a"));
  auto back = open_store("host-a");
  ASSERT_TRUE(back);
  EXPECT_FALSE(back->begin_intent(Intent{0, "create-key", "y", 1, {Bytes{4}, "custody:y:v1"}, 5}))
      << "host-a came back while host-c was recovering its work";
  ASSERT_TRUE(c->drop_intent(*a_intent));
  ASSERT_TRUE(c->drop_intent(*a_intent)) << "undoing an intent twice is harmless";
  c->end_recovery();
  EXPECT_FALSE(c->recovers_for("host-a"));
  EXPECT_TRUE(back->begin_intent(Intent{0, "create-key", "y", 1, {Bytes{4}, "custody:y:v1"}, 5}))
      << "host-a's lease was not given back";

  // host-a, reconnected, tries to commit the change whose intent was undone: refused, nothing stored.
  auto late = a->insert_key(make_key("k", 1), *a_intent);
  if (!late && late.error().message.find("undone") == std::string::npos) late = a->insert_key(make_key("k", 1), *a_intent);
  ASSERT_FALSE(late) << "a change undone by another member's recovery was committed";
  EXPECT_EQ(late.error().code, core::Code::failed_precondition) << "409: the database answered, the change conflicts";
  EXPECT_NE(late.error().message.find("undone by another daemon's recovery"), std::string::npos)
      << late.error().message;
  auto keys = c->load_keys();
  ASSERT_TRUE(keys);
  EXPECT_TRUE(keys->empty());
  // host-c's own change still commits.
  EXPECT_TRUE(c->insert_key(make_key("j", 1), *c_intent));
}

TEST_F(PgStore, ALeaseMovesWhenItsHoldersConnectionDies) {
  auto other = open_store();
  ASSERT_TRUE(other);
  ASSERT_TRUE(store_->try_lease("scheduler").value());
  ASSERT_TRUE(store_->try_lease("scheduler").value()) << "taking a held lease again keeps it";
  EXPECT_TRUE(store_->holds_lease("scheduler").value());
  EXPECT_FALSE(other->try_lease("scheduler").value()) << "two holders at once";
  EXPECT_TRUE(other->try_lease("rotation").value()) << "leases are independent by name";

  terminate(store_->backend_pid());
  bool moved = false;
  for (auto deadline = std::chrono::steady_clock::now() + 10s; std::chrono::steady_clock::now() < deadline;) {
    auto taken = other->try_lease("scheduler");
    ASSERT_TRUE(taken) << taken.error().message;
    if ((moved = *taken)) break;
    std::this_thread::yield();
  }
  ASSERT_TRUE(moved) << "the lease stayed with a dead connection";
  // The old holder finds out: an error (its connection is gone) then, reconnected, not held.
  auto held = store_->holds_lease("scheduler");
  if (!held) held = store_->holds_lease("scheduler");
  ASSERT_TRUE(held) << held.error().message;
  EXPECT_FALSE(*held);
  EXPECT_FALSE(store_->try_lease("scheduler").value());
  ASSERT_TRUE(other->release_lease("scheduler"));
  EXPECT_TRUE(store_->try_lease("scheduler").value());
}

TEST_F(PgStore, ACommittedChangeIsAnnouncedOnAnotherConnectionAndARolledBackOneIsNot) {
  ASSERT_TRUE(store_->insert_key(make_key("k", 1), 0));
  auto feed = PgChangeFeed::open(Cluster::get()->settings(database_));
  ASSERT_TRUE(feed) << feed.error().message;
  auto first = (*feed)->wait(0ms);
  ASSERT_TRUE(first);
  ASSERT_EQ(first->size(), 1u);
  EXPECT_EQ((*first)[0].what, kResyncChange) << "a new feed must start with a full resync";

  // A change that fails is rolled back with its NOTIFY; the next one is the first heard.
  ASSERT_FALSE(store_->insert_key(make_key("lost", 1), 0, {}, "job-missing"));
  auto other = open_store();
  ASSERT_TRUE(other->set_state("k", KeyState::disabled, std::nullopt));
  std::vector<std::string> heard;
  for (auto deadline = std::chrono::steady_clock::now() + 10s;
       heard.empty() && std::chrono::steady_clock::now() < deadline;) {
    auto changes = (*feed)->wait(1000ms);
    ASSERT_TRUE(changes) << changes.error().message;
    for (const auto& c : *changes) heard.push_back(c.what);
  }
  ASSERT_FALSE(heard.empty()) << "no notification arrived";
  EXPECT_EQ(heard[0], "key:k");

  ASSERT_TRUE(other->insert_request(make_request("req-1", 1)));
  ASSERT_TRUE(other->insert_job(make_job("job-1", 1), {}));
  std::vector<std::string> more;
  for (auto deadline = std::chrono::steady_clock::now() + 10s;
       more.size() < 2 && std::chrono::steady_clock::now() < deadline;) {
    auto changes = (*feed)->wait(1000ms);
    ASSERT_TRUE(changes) << changes.error().message;
    for (const auto& c : *changes) more.push_back(c.what);
  }
  EXPECT_EQ(more, (std::vector<std::string>{"request:req-1", "job:job-1"}));
}

TEST_F(PgStore, AFeedThatLosesItsConnectionSaysSoThenResyncs) {
  auto feed = PgChangeFeed::open(Cluster::get()->settings(database_));
  ASSERT_TRUE(feed);
  ASSERT_TRUE((*feed)->wait(0ms));
  terminate((*feed)->backend_pid());
  auto lost = (*feed)->wait(10s);
  ASSERT_FALSE(lost) << "a dead feed answered " << lost->size() << " changes";
  EXPECT_EQ(lost.error().code, Code::unavailable);
  auto again = (*feed)->wait(0ms);
  ASSERT_TRUE(again) << again.error().message;
  ASSERT_FALSE(again->empty());
  EXPECT_EQ((*again)[0].what, kResyncChange) << "changes made while it was away were missed";
}

TEST_F(PgStore, EveryReadOnADroppedConnectionIsAnErrorNeverAnEmptyAnswerAndTheNextCallReconnects) {
  ASSERT_TRUE(store_->insert_key(make_key("k", 2), 0));
  ASSERT_TRUE(store_->insert_request(make_request("req-1", 1)));
  ASSERT_TRUE(store_->set_state("k", KeyState::enabled, std::nullopt, "req-applied"));
  ASSERT_TRUE(store_->insert_job(make_job("job-1", 1), {}));
  ASSERT_TRUE(store_->begin_intent(Intent{0, "rotate-key", "k", 3, {Bytes{1}, "l"}, 1}));
  const std::vector<std::pair<const char*, std::function<Outcome<std::size_t>()>>> reads = {
      {"load_keys",
       [&]() -> Outcome<std::size_t> {
         auto r = store_->load_keys();
         if (!r) return unexpected(r.error());
         return r->size();
       }},
      {"load_requests",
       [&]() -> Outcome<std::size_t> {
         auto r = store_->load_requests();
         if (!r) return unexpected(r.error());
         return r->size();
       }},
      {"load_jobs",
       [&]() -> Outcome<std::size_t> {
         auto r = store_->load_jobs();
         if (!r) return unexpected(r.error());
         return r->size();
       }},
      {"pending_intents",
       [&]() -> Outcome<std::size_t> {
         auto r = store_->pending_intents();
         if (!r) return unexpected(r.error());
         return r->size();
       }},
      {"applied",
       [&]() -> Outcome<std::size_t> {
         auto r = store_->applied("req-applied");
         if (!r) return unexpected(r.error());
         return *r ? 1 : 0;
       }},
      {"encryptions",
       [&]() -> Outcome<std::size_t> {
         auto r = store_->encryptions("k", 1);
         if (!r) return unexpected(r.error());
         return 1;
       }},
  };
  for (const auto& [name, read] : reads) {
    SCOPED_TRACE(name);
    const std::uint64_t errors_before = store_->errors();
    terminate(store_->backend_pid());
    auto failed = read();
    ASSERT_FALSE(failed) << "a read on a dropped connection answered " << *failed;
    EXPECT_EQ(failed.error().code, Code::unavailable) << failed.error().message;
    EXPECT_TRUE(store_->failing());
    EXPECT_EQ(store_->errors(), errors_before + 1);
    auto again = read();
    ASSERT_TRUE(again) << again.error().message;
    EXPECT_EQ(*again, 1u);
    EXPECT_FALSE(store_->failing()) << "health must clear once the store answers again";
  }
}

TEST_F(PgStore, AChangeOnADroppedConnectionIsNotAcknowledged) {
  ASSERT_TRUE(store_->insert_key(make_key("k", 1), 0));
  terminate(store_->backend_pid());
  auto changed = store_->set_state("k", KeyState::disabled, std::nullopt, "req-1");
  ASSERT_FALSE(changed);
  EXPECT_EQ(changed.error().code, Code::unavailable);
  EXPECT_FALSE(store_->applied("req-1").value());
  EXPECT_EQ(store_->load_keys().value().at(0).state, KeyState::enabled);
}

TEST_F(PgStore, WhileTheDatabaseIsDownEveryCallFailsAndServiceResumesWhenItReturns) {
  ASSERT_TRUE(store_->insert_key(make_key("k", 1), 0));
  auto stopped = Cluster::get()->stop();
  ASSERT_TRUE(stopped) << stopped.error();
  auto keys = store_->load_keys();
  auto applied = store_->applied("req-1");
  auto changed = store_->set_state("k", KeyState::disabled, std::nullopt);
  auto restarted = Cluster::get()->restart();
  ASSERT_TRUE(restarted) << restarted.error();
  ASSERT_FALSE(keys) << "an unreachable database answered " << keys->size() << " keys";
  EXPECT_EQ(keys.error().code, Code::unavailable);
  ASSERT_FALSE(applied) << "an unreachable database answered 'applied: " << *applied << "'";
  ASSERT_FALSE(changed);
  EXPECT_TRUE(store_->failing());
  auto back = store_->load_keys();
  ASSERT_TRUE(back) << back.error().message;
  EXPECT_EQ(back->size(), 1u);
  EXPECT_FALSE(store_->failing());
}

TEST_F(PgStore, MigrationsRecordTheirVersionAndANewerDatabaseIsRefused) {
  auto conn = PgConnection::open(Cluster::get()->settings(database_));
  ASSERT_TRUE(conn);
  EXPECT_EQ(pg_schema_version(**conn).value(), pg_latest_schema_version());
  // Version n is the same schema in both stores (what migrate-state relies on): a SQLite
  // migration without its PostgreSQL twin fails here.
  TempDir dir;
  ASSERT_TRUE(StateStore::open(dir.path() + "/state.db"));
  ASSERT_EQ(run("python3 -c \"import sqlite3; print(sqlite3.connect('" + dir.path() +
                "/state.db').execute('PRAGMA user_version').fetchone()[0])\" > " + dir.path() + "/version"),
            0);
  EXPECT_EQ(std::to_string(pg_latest_schema_version()) + "\n", read_file(dir.path() + "/version"));
  ASSERT_TRUE(store_->insert_key(make_key("k", 1), 0));
  ASSERT_TRUE((*conn)->script("test", "UPDATE schema_version SET version = 99"));
  auto newer = PostgresStateStore::open(Cluster::get()->settings(database_), "test-host");
  ASSERT_FALSE(newer);
  EXPECT_NE(newer.error().find("newer custodyd"), std::string::npos) << newer.error();
  // Refused, and untouched.
  EXPECT_EQ(pg_schema_version(**conn).value(), 99u);
  EXPECT_EQ(store_->load_keys().value().size(), 1u);
}

TEST_F(PgStore, AFleetStartingAtOnceMigratesAnEmptyDatabaseOnce) {
  const std::string database = fresh_database();
  std::vector<std::thread> threads;
  std::vector<std::string> errors(4);
  for (std::size_t i = 0; i < errors.size(); ++i)
    threads.emplace_back([&, i] {
      auto opened = PostgresStateStore::open(Cluster::get()->settings(database), "test-host");
      if (!opened) errors[i] = opened.error();
    });
  for (auto& t : threads) t.join();
  for (const auto& e : errors) EXPECT_EQ(e, "");
  auto conn = PgConnection::open(Cluster::get()->settings(database));
  ASSERT_TRUE(conn);
  EXPECT_EQ(pg_schema_version(**conn).value(), pg_latest_schema_version());
}

TEST_F(PgStore, ThePasswordComesFromAPrivateFileNeverFromTheDsn) {
  TempDir dir;
  PgSettings s = Cluster::get()->settings(database_);
  const std::string password = read_file(s.password_file);

  PgSettings inline_password{s.dsn + " password=" + password, ""};
  auto refused = PostgresStateStore::open(inline_password, "test-host");
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().find("password file"), std::string::npos) << refused.error();
  EXPECT_EQ(refused.error().find(password.substr(0, 8)), std::string::npos) << "the error must not echo the password";

  PgSettings no_password{s.dsn, ""};
  EXPECT_FALSE(PostgresStateStore::open(no_password, "test-host")) << "the cluster requires a password";

  const std::string loose = dir.path() + "/loose.pw";
  write_file(loose, password);
  ASSERT_EQ(::chmod(loose.c_str(), 0644), 0);
  auto open_loose = PostgresStateStore::open(PgSettings{s.dsn, loose}, "test-host");
  ASSERT_FALSE(open_loose);
  EXPECT_NE(open_loose.error().find("group or others"), std::string::npos) << open_loose.error();

  const std::string wrong = dir.path() + "/wrong.pw";
  write_file(wrong, "not-the-password\n");
  ASSERT_EQ(::chmod(wrong.c_str(), 0600), 0);
  auto open_wrong = PostgresStateStore::open(PgSettings{s.dsn, wrong}, "test-host");
  ASSERT_FALSE(open_wrong);
  EXPECT_NE(open_wrong.error().find("password authentication failed"), std::string::npos) << open_wrong.error();

  EXPECT_FALSE(PostgresStateStore::open(PgSettings{s.dsn, dir.path() + "/missing.pw"}, "test-host"));
  // A password file without a trailing newline works as well as one with.
  ASSERT_EQ(::chmod(loose.c_str(), 0400), 0);
  EXPECT_TRUE(PostgresStateStore::open(PgSettings{s.dsn, loose}, "test-host"));
}

TEST_F(PgStore, TheDsnsTlsSettingsReachLibpq) {
  PgSettings s = Cluster::get()->settings(database_);
  // libpq checks sslmode before connecting: a bad value proves the dsn's TLS settings are
  // passed through rather than replaced.
  auto bogus = PostgresStateStore::open(PgSettings{s.dsn + " sslmode=bogus", s.password_file}, "test-host");
  ASSERT_FALSE(bogus);
  EXPECT_NE(bogus.error().find("sslmode"), std::string::npos) << bogus.error();
  // A Unix socket carries no TLS: libpq accepts any mode there.
  EXPECT_TRUE(PostgresStateStore::open(PgSettings{s.dsn + " sslmode=disable", s.password_file}, "test-host"));
  auto garbled = PostgresStateStore::open(PgSettings{"host='unterminated", s.password_file}, "test-host");
  ASSERT_FALSE(garbled);
  EXPECT_NE(garbled.error().find("conninfo"), std::string::npos) << garbled.error();
}

TEST_F(PgStore, AFailedQueryIsAnErrorNamingItsTableNeverAShorterList) {
  ASSERT_TRUE(store_->insert_key(make_key("k", 1), 0));
  ASSERT_TRUE(store_->insert_request(make_request("req-1", 1)));
  ASSERT_TRUE(store_approval(*store_, "req-1", StoredApproval{"alice", "sig", 2}, "pending"));
  ASSERT_TRUE(store_->insert_job(make_job("job-1", 1), {}));
  ASSERT_TRUE(store_->begin_intent(Intent{0, "rotate-key", "k", 2, {Bytes{1}, "l"}, 1}));
  const auto count = [](auto loaded) -> Outcome<std::size_t> {
    if (!loaded) return unexpected(loaded.error());
    return loaded->size();
  };
  const std::vector<std::pair<std::string, std::function<Outcome<std::size_t>()>>> tables = {
      {"keys", [&] { return count(store_->load_keys()); }},
      {"key_versions", [&] { return count(store_->load_keys()); }},
      {"admin_requests", [&] { return count(store_->load_requests()); }},
      {"approvals", [&] { return count(store_->load_requests()); }},
      {"import_jobs", [&] { return count(store_->load_jobs()); }},
      {"intents", [&] { return count(store_->pending_intents()); }},
  };
  for (const auto& [table, load] : tables) {
    SCOPED_TRACE(table);
    // The table is gone from under the store (a restore gone wrong, a DBA's mistake).
    ASSERT_TRUE(Cluster::get()->execute(database_, "ALTER TABLE " + table + " RENAME TO moved_away"));
    auto failed = load();
    ASSERT_TRUE(Cluster::get()->execute(database_, "ALTER TABLE moved_away RENAME TO " + table));
    ASSERT_FALSE(failed) << "answered " << *failed << " rows";
    EXPECT_EQ(failed.error().code, Code::unavailable);
    EXPECT_NE(failed.error().message.find("table " + table), std::string::npos) << failed.error().message;
    auto again = load();
    ASSERT_TRUE(again) << again.error().message;
    EXPECT_EQ(*again, 1u);
  }
}

TEST_F(PgStore, TwoDaemonsApplyingOneAdminRequestAtOnceCommitItOnce) {
  ASSERT_TRUE(store_->insert_key(make_key("k", 1), 0));
  auto other = open_store();
  ASSERT_TRUE(other);
  for (int i = 0; i < 20; ++i) {
    const std::string request = "req-" + std::to_string(i);
    std::atomic<int> ready{0};
    Outcome<void> results[2] = {Outcome<void>{}, Outcome<void>{}};
    auto apply = [&](PostgresStateStore* store, int slot) {
      Policy p;
      p.rules.push_back(PolicyRule{static_cast<uid_t>(1000 + slot), std::nullopt, std::nullopt, std::nullopt, 0x1});
      ++ready;
      while (ready.load() < 2) std::this_thread::yield();
      results[slot] = store->set_policy("k", p, request);
    };
    std::thread a(apply, store_.get(), 0), b(apply, other.get(), 1);
    a.join();
    b.join();
    SCOPED_TRACE(request);
    // The applied_requests row commits with the change: one daemon's transaction wins, the other's
    // is refused whole, so its change never lands.
    ASSERT_NE(bool(results[0]), bool(results[1]));
    const int winner = results[0] ? 0 : 1;
    EXPECT_EQ(results[1 - winner].error().code, Code::unavailable);
    EXPECT_TRUE(store_->applied(request).value());
    auto k = store_->load_keys().value().at(0);
    ASSERT_EQ(k.policy.rules.size(), 1u);
    EXPECT_EQ(k.policy.rules[0].uid, std::optional<uid_t>(1000 + winner));
  }
}

// Two daemons each completing the quorum of one request from their own view at the same moment:
// one final approval is stored (and its daemon runs the request), the other is refused whole.
TEST_F(PgStore, ConcurrentFinalApprovalsOnTwoDaemonsStoreOnlyOne) {
  auto other = open_store();
  ASSERT_TRUE(other);
  for (int i = 0; i < 20; ++i) {
    const std::string request = "req-" + std::to_string(i);
    ASSERT_TRUE(store_->insert_request(make_request(request, 1)));
    ASSERT_TRUE(store_approval(*store_, request, StoredApproval{"alice", "sig", 2}, "pending"));
    std::atomic<int> ready{0};
    Outcome<void> results[2] = {Outcome<void>{}, Outcome<void>{}};
    auto approve = [&](PostgresStateStore* store, int slot) {
      ++ready;
      while (ready.load() < 2) std::this_thread::yield();
      results[slot] = store_approval(*store, request, StoredApproval{slot == 0 ? "bob" : "carol", "sig", 3}, "executing");
    };
    std::thread a(approve, store_.get(), 0), b(approve, other.get(), 1);
    a.join();
    b.join();
    SCOPED_TRACE(request);
    ASSERT_NE(bool(results[0]), bool(results[1]));
    const int winner = results[0] ? 0 : 1;
    EXPECT_EQ(results[1 - winner].error().code, Code::failed_precondition) << results[1 - winner].error().message;
    EXPECT_EQ(store_->approvers(request).value(),
              (std::vector<std::string>{"alice", winner == 0 ? "bob" : "carol"}));
  }
}

// --- the fleet's guarantees in the core, over separate connections (one per daemon) ---

namespace {

std::string make_operator_key(const std::string& private_path) {
  EVP_PKEY* key = EVP_EC_gen("P-256");
  FILE* f = std::fopen(private_path.c_str(), "w");
  PEM_write_PrivateKey(f, key, nullptr, nullptr, 0, nullptr, nullptr);
  std::fclose(f);
  std::string pem = public_key_pem(key).value();
  EVP_PKEY_free(key);
  return pem;
}

}  // namespace

// Three daemons' meters encrypting at once under one key whose usage limit is 50: together they
// make exactly 50 encryptions, each number once, and then every one of them refuses (and says so
// to its scheduler once). Counted per daemon, as before, each would make 50.
TEST_F(PgStore, UsageMetersOfThreeDaemonsStopTogetherAtTheKeysLimit) {
  ASSERT_TRUE(store_->insert_key(make_key("k", 1), 0));
  constexpr std::uint64_t kLimit = 50;
  std::vector<std::unique_ptr<PostgresStateStore>> stores;
  std::vector<std::unique_ptr<UsageMeter>> meters;
  std::atomic<int> signals{0};
  for (int i = 0; i < 3; ++i) {
    stores.push_back(open_store());
    ASSERT_TRUE(stores.back());
    meters.push_back(std::make_unique<UsageMeter>(*stores.back()));
    meters.back()->on_limit([&](const std::string&) { ++signals; });
  }
  std::mutex mutex;
  std::multiset<std::uint64_t> numbers;
  std::vector<std::string> errors;
  std::atomic<int> refused{0};
  std::vector<std::thread> threads;
  for (auto& m : meters)
    for (int t = 0; t < 2; ++t)
      threads.emplace_back([&, meter = m.get()] {
        for (int i = 0; i < 1000; ++i) {  // bounded: counted per daemon, this would not stop at 50
          auto n = meter->count("k", 1, kLimit);
          std::lock_guard lock(mutex);
          if (n) {
            numbers.insert(*n);
            continue;
          }
          if (n.error().code == Code::failed_precondition) ++refused;
          else errors.push_back(n.error().message);
          return;
        }
      });
  for (auto& t : threads) t.join();
  EXPECT_TRUE(errors.empty()) << errors.front();
  std::printf("[fleet] usage limit %llu: %zu encryptions across three daemons\n",
              static_cast<unsigned long long>(kLimit), numbers.size());
  EXPECT_EQ(numbers.size(), kLimit);
  std::uint64_t expected = 1;
  for (auto n : numbers) EXPECT_EQ(n, expected++) << "a number taken twice or skipped";
  EXPECT_EQ(refused.load(), 6) << "every thread of every daemon is refused in the end";
  EXPECT_EQ(signals.load(), 3) << "each daemon's scheduler hears of the limit once";
  EXPECT_EQ(store_->encryptions("k", 1).value(), kLimit);
  for (auto& m : meters) EXPECT_EQ(m->used("k", 1).value(), kLimit) << "used() is the fleet's count";
}

// Proposed on A, approved on B and finally on C, each daemon's view loaded before the proposal
// and never refreshed (no resync ran): the final approval on C counts B's, runs the request once,
// and a late approval on A, whose view still says pending without approvals, is refused.
TEST_F(PgStore, AFinalApprovalOnAStaleViewCountsEveryStoredApprovalAndRunsOnce) {
  TempDir keys;
  std::vector<std::pair<std::string, std::string>> operators;
  for (const char* name : {"alice", "bob", "carol"})
    operators.emplace_back(name, make_operator_key(keys.path() + "/" + name + ".pem"));
  FakeClock clock;
  std::mutex mutex;
  std::map<std::string, int> executed;
  std::vector<std::unique_ptr<PostgresStateStore>> stores;
  std::vector<std::unique_ptr<AdminRequests>> daemons;
  for (int i = 0; i < 3; ++i) {
    stores.push_back(open_store());
    ASSERT_TRUE(stores.back());
    auto ops = OperatorSet::from_pem(operators);
    ASSERT_TRUE(ops) << ops.error();
    daemons.push_back(std::make_unique<AdminRequests>(
        *stores.back(), std::move(*ops), QuorumPolicy{}, clock, "fleet", std::chrono::seconds(900),
        [](const std::string&, const boost::json::object&) -> Outcome<void> { return {}; },
        [&](const std::string& op, const boost::json::object&, const std::string& id) -> Outcome<boost::json::object> {
          std::lock_guard lock(mutex);
          ++executed[id];
          return boost::json::object{{"ran", op}};
        },
        [](const std::string&, const boost::json::object&) { return boost::json::object{}; },
        [](std::vector<AuditEvent>) { return true; }));
    ASSERT_TRUE(daemons.back()->load());
  }
  auto sign = [&](const std::string& name, const std::string& challenge) {
    return base64_encode(client::sign_with_key_file(keys.path() + "/" + name + ".pem", challenge).value());
  };
  const AdminCaller caller{"req", Peer{0, 0, 1}};
  auto proposed = daemons[0]->propose("rotate-key", boost::json::object{{"name", "k"}}, caller);
  ASSERT_TRUE(proposed) << proposed.error().message;
  const std::string id = proposed->id;
  auto first = daemons[1]->approve(id, "alice", sign("alice", proposed->challenge), caller);
  ASSERT_TRUE(first) << "B, which never saw the proposal: " << first.error().message;
  EXPECT_EQ(first->state, "pending");
  auto last = daemons[2]->approve(id, "bob", sign("bob", proposed->challenge), caller);
  ASSERT_TRUE(last) << last.error().message;
  EXPECT_EQ(last->state, "executed");
  ASSERT_EQ(last->approvals.size(), 2u);
  auto late = daemons[0]->approve(id, "carol", sign("carol", proposed->challenge), caller);
  ASSERT_FALSE(late) << "a third approval on A's stale view was stored: " << late->state;
  EXPECT_EQ(late.error().code, Code::failed_precondition) << late.error().message;
  EXPECT_EQ(executed[id], 1);
  for (auto& d : daemons) ASSERT_TRUE(d->load());
  EXPECT_EQ(daemons[0]->get(id).value().state, "executed");
  EXPECT_EQ(store_->approvers(id).value(), (std::vector<std::string>{"alice", "bob"}));
}
