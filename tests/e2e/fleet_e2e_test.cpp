// A fleet (docs/fleet.md): several real custodyd on ONE SoftHSMv2 token (the stand-in for a
// network HSM partition) sharing their state in one scratch PostgreSQL. What one daemon commits
// is served by the others within the propagation bound; admin requests move between daemons and
// run exactly once, also when the executing daemon is killed.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <functional>
#include <memory>
#include <thread>

#include "cli/approval_signer.h"
#include "common/base64.h"
#include "tests/support/daemon_process.h"
#include "tests/support/postgres_cluster.h"

using namespace custody;
using namespace custody::test;
namespace json = boost::json;
using Clock = std::chrono::steady_clock;

namespace {

// The documented bound (docs/fleet.md): the 1 s periodic resync, plus SoftHSMv2's own delay in
// showing one process the objects another made (the change feed is usually much faster).
constexpr std::chrono::milliseconds kPropagationBound{2500};

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

// How long until check() holds, polling; nullopt when it did not within the deadline.
std::optional<std::chrono::milliseconds> time_until(const std::function<bool()>& check,
                                                    std::chrono::milliseconds deadline = std::chrono::seconds(10)) {
  const auto start = Clock::now();
  while (Clock::now() - start < deadline) {
    if (check()) return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start);
  }
  return std::nullopt;
}

json::value get_json(client::UnixHttpClient& c, const std::string& target, int& status) {
  auto r = c.call("GET", target);
  status = r ? r->status : -1;
  return r && !r->body.empty() ? json::parse(r->body) : json::value{};
}

class FleetE2E : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!Cluster::get()) GTEST_SKIP() << Cluster::why_not();
    static int next = 0;
    database_ = "custody_fleet_" + std::to_string(::getpid()) + "_" + std::to_string(next++);
    auto made = Cluster::get()->create_database(database_);
    ASSERT_TRUE(made) << made.error();
  }

  DaemonOptions fleet_options(const Daemon* first) const {
    DaemonOptions o;
    if (first) {
      o.shared_token = first->token();
      o.operator_keys_from = first->dir();
    }
    const auto settings = Cluster::get()->settings(database_);
    o.state_yaml = "  backend: postgresql\n  dsn: \"" + settings.dsn + "\"\n  password_file: " + settings.password_file + "\n";
    return o;
  }
  std::unique_ptr<Daemon> start_member(const Daemon* first) { return std::make_unique<Daemon>(fleet_options(first)); }

  std::string database_;
};

int wrap_status(Daemon& d, const std::string& key) { return d.post("/v1/keys/" + key + "/wrap", {{"plaintext", "aGk="}}).first; }

TEST_F(FleetE2E, AKeyCreatedOnOneDaemonIsServedByEveryOtherWithinTheBound) {
  auto a = start_member(nullptr);
  auto b = start_member(a.get());
  auto c = start_member(a.get());
  ASSERT_EQ(a->create_key("shared", "aes-256-gcm", allow_me_everything()), 201) << a->log();
  for (Daemon* d : {b.get(), c.get()}) {
    auto took = time_until([&] { return wrap_status(*d, "shared") == 200; });
    ASSERT_TRUE(took) << "never served by the other daemon:\n" << d->log();
    std::printf("[fleet] create-key on A served by %s after %lld ms\n", d == b.get() ? "B" : "C",
                static_cast<long long>(took->count()));
    EXPECT_LE(*took, kPropagationBound);
  }
  // What one daemon wraps, another unwraps: one key in the token, found by CKA_ID.
  auto [s, wrapped] = b->post("/v1/keys/shared/wrap", {{"plaintext", "ZmxlZXQ="}});
  ASSERT_EQ(s, 200);
  auto [s2, opened] = c->post("/v1/keys/shared/unwrap", {{"ciphertext", wrapped.at("ciphertext")}});
  ASSERT_EQ(s2, 200) << json::serialize(opened);
  EXPECT_EQ(opened.at("plaintext").as_string(), "ZmxlZXQ=");
}

TEST_F(FleetE2E, ADisableOnOneDaemonIsRefusedByTheOthersWithinTheBound) {
  auto a = start_member(nullptr);
  auto b = start_member(a.get());
  ASSERT_EQ(a->create_key("revoked", "aes-256-gcm", allow_me_everything()), 201);
  ASSERT_TRUE(time_until([&] { return wrap_status(*b, "revoked") == 200; }));
  ASSERT_EQ(a->admin_operation("disable-key", {{"name", "revoked"}}).first, 201);
  const auto disabled_at = Clock::now();
  EXPECT_EQ(wrap_status(*a, "revoked"), 409);
  auto took = time_until([&] { return wrap_status(*b, "revoked") == 409; });
  ASSERT_TRUE(took) << b->log();
  const auto since = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - disabled_at);
  std::printf("[fleet] disable-key on A refused by B after %lld ms\n", static_cast<long long>(since.count()));
  EXPECT_LE(since, kPropagationBound);
}

// The token is the source of truth for key material and the state is one for the fleet: each
// member's keys check knows the keys every daemon made (found by CKA_ID), and every member names
// as a stray an object with custody's label that no daemon's state knows. On SoftHSMv2, B's own
// create right after A's used to hide A's new object from B ("the token object of the key is
// missing") until B restarted; B now starts its module again on a missing object.
TEST_F(FleetE2E, KeysCheckOnAnyMemberKnowsEveryDaemonsKeysAndNamesWhatNoneKnows) {
  auto a = start_member(nullptr);
  auto b = start_member(a.get());
  ASSERT_EQ(a->create_key("made-on-a", "aes-256-gcm", allow_me_everything()), 201);
  ASSERT_EQ(b->create_key("made-on-b", "aes-256-gcm", allow_me_everything()), 201);
  for (Daemon* d : {a.get(), b.get()})
    for (const char* key : {"made-on-a", "made-on-b"})
      ASSERT_TRUE(time_until([&] { return wrap_status(*d, key) == 200; }))
          << (d == a.get() ? "A: " : "B: ") << key << " answers "
          << json::serialize(d->post(std::string("/v1/keys/") + key + "/wrap", {{"plaintext", "aGk="}}).second);
  auto check = [](Daemon& d) { return json::parse(d.admin().call("POST", "/v1/admin/keys/check")->body).as_object(); };
  for (Daemon* d : {a.get(), b.get()}) EXPECT_TRUE(check(*d).at("clean").as_bool()) << json::serialize(check(*d));

  const TokenFiles& t = a->token();
  ASSERT_EQ(run("SOFTHSM2_CONF='" + t.conf + "' pkcs11-tool --module " CUSTODY_SOFTHSM_MODULE " --token-label '" + t.label +
                "' --login --pin '" + t.pin + "' --keygen --key-type AES:32 --label custody:planted --id feedface >/dev/null 2>&1"),
            0);
  for (Daemon* d : {a.get(), b.get()}) {
    const auto report = check(*d);
    EXPECT_FALSE(report.at("clean").as_bool());
    EXPECT_TRUE(report.at("missing").as_array().empty()) << json::serialize(report);
    ASSERT_EQ(report.at("strays").as_array().size(), 1u) << json::serialize(report);
    EXPECT_EQ(report.at("strays").at(0).as_string(), "custody:planted (CKA_ID feedface)");
  }
}

// Proposed on A, approved by alice on A and by bob on B: B runs it, once, and both serve the result.
TEST_F(FleetE2E, AnAdminRequestProposedOnOneDaemonIsApprovedOnAnotherAndRunsOnce) {
  auto a = start_member(nullptr);
  auto b = start_member(a.get());
  ASSERT_EQ(a->create_key("rotated", "aes-256-gcm", allow_me_everything()), 201);
  auto proposed = a->admin().call("POST", "/v1/admin/requests",
                                  json::serialize(json::value{{"operation", "rotate-key"}, {"params", {{"name", "rotated"}}}}));
  ASSERT_EQ(proposed->status, 201) << proposed->body;
  const std::string id(json::parse(proposed->body).at("request").at("id").as_string());
  ASSERT_EQ(a->approve(id, "alice").first, 200);
  int status = 0;
  ASSERT_TRUE(time_until([&] {
    auto shown = get_json(b->admin(), "/v1/admin/requests/" + id, status);
    return status == 200 && shown.at("request").at("approvals").as_array().size() == 1;
  })) << "B never saw the request and alice's approval";
  auto [s, approved] = b->approve(id, "bob");
  ASSERT_EQ(s, 200) << json::serialize(approved);
  EXPECT_EQ(approved.at("request").at("state").as_string(), "executed");
  // A sees it executed, and the key at version 2 (a second run would make 3).
  EXPECT_TRUE(time_until([&] {
    auto shown = get_json(a->admin(), "/v1/admin/requests/" + id, status);
    return status == 200 && shown.at("request").at("state") == "executed";
  }));
  for (Daemon* d : {a.get(), b.get()}) {
    EXPECT_TRUE(time_until([&] { return get_json(d->service(), "/v1/keys/rotated", status).at("current_version") == 2; }))
        << json::serialize(get_json(d->service(), "/v1/keys/rotated", status));
  }
  // A second final approval, on A, is refused: the request is no longer pending.
  EXPECT_EQ(a->approve(id, "bob").first, 409);
}

// Final approvals on two daemons at the same moment: one runs the request, the other is refused.
TEST_F(FleetE2E, ConcurrentFinalApprovalsOnTwoDaemonsRunTheRequestOnce) {
  auto a = start_member(nullptr);
  auto b = start_member(a.get());
  ASSERT_EQ(a->create_key("raced", "aes-256-gcm", allow_me_everything()), 201);
  auto proposed = a->admin().call("POST", "/v1/admin/requests",
                                  json::serialize(json::value{{"operation", "rotate-key"}, {"params", {{"name", "raced"}}}}));
  ASSERT_EQ(proposed->status, 201) << proposed->body;
  const std::string id(json::parse(proposed->body).at("request").at("id").as_string());
  ASSERT_EQ(a->approve(id, "alice").first, 200);
  int status = 0;
  ASSERT_TRUE(time_until([&] {
    auto shown = get_json(b->admin(), "/v1/admin/requests/" + id, status);
    return status == 200 && shown.at("request").at("approvals").as_array().size() == 1;
  }));
  std::atomic<int> ready{0};
  std::pair<int, json::value> results[2];
  auto approve = [&](Daemon* d, const char* op, int slot) {
    ++ready;
    while (ready.load() < 2) std::this_thread::yield();
    results[slot] = d->approve(id, op);
  };
  std::thread on_a(approve, a.get(), "bob", 0), on_b(approve, b.get(), "carol", 1);
  on_a.join();
  on_b.join();
  std::printf("[fleet] concurrent final approvals: A %d, B %d\n", results[0].first, results[1].first);
  ASSERT_EQ((results[0].first == 200) + (results[1].first == 200), 1) << json::serialize(results[0].second) << "\n"
                                                                       << json::serialize(results[1].second);
  EXPECT_EQ(results[results[0].first == 200 ? 1 : 0].first, 409);
  for (Daemon* d : {a.get(), b.get()})
    EXPECT_TRUE(time_until([&] { return get_json(d->service(), "/v1/keys/raced", status).at("current_version") == 2; }));
  EXPECT_EQ(get_json(a->service(), "/v1/keys/raced", status).at("current_version"), 2) << "ran twice";
}

// The daemon that reaches the quorum is killed before it runs the operation; restarted, it runs
// it exactly once, and the other daemon serves the result.
TEST_F(FleetE2E, AnExecutingDaemonKilledAfterTheQuorumRunsTheOperationOnceAfterRestart) {
  auto a = start_member(nullptr);
  auto options = fleet_options(a.get());
  options.env["CUSTODY_FAULT_POINT"] = "admin.after-quorum";
  Daemon b(options);
  ASSERT_EQ(a->create_key("once", "aes-256-gcm", allow_me_everything()), 201);
  auto proposed = a->admin().call("POST", "/v1/admin/requests",
                                  json::serialize(json::value{{"operation", "rotate-key"}, {"params", {{"name", "once"}}}}));
  ASSERT_EQ(proposed->status, 201) << proposed->body;
  const std::string id(json::parse(proposed->body).at("request").at("id").as_string());
  ASSERT_EQ(a->approve(id, "alice").first, 200);
  int status = 0;
  ASSERT_TRUE(time_until([&] {
    auto shown = get_json(b.admin(), "/v1/admin/requests/" + id, status);
    return status == 200 && shown.at("request").at("approvals").as_array().size() == 1;
  }));
  EXPECT_EQ(b.approve(id, "bob").first, -1) << "B should have died at the fault point";
  ASSERT_EQ(b.wait_exit(), 86) << b.log();
  b.options().env.clear();
  b.start();
  for (Daemon* d : {a.get(), &b}) {
    EXPECT_TRUE(time_until([&] { return get_json(d->service(), "/v1/keys/once", status).at("current_version") == 2; }))
        << json::serialize(get_json(d->service(), "/v1/keys/once", status));
    EXPECT_TRUE(time_until([&] {
      auto shown = get_json(d->admin(), "/v1/admin/requests/" + id, status);
      return status == 200 && shown.at("request").at("state") == "executed";
    }));
  }
  EXPECT_EQ(get_json(b.service(), "/v1/keys/once", status).at("current_version"), 2) << "ran twice";
}

// Proposed on A, first approval on B and the final one on C right after it, before any resync
// could bring either daemon the other's change: C counts B's approval and runs the request once.
TEST_F(FleetE2E, AFinalApprovalOnAThirdDaemonRightAfterTheFirstOnAnotherRunsOnce) {
  auto a = start_member(nullptr);
  auto b = start_member(a.get());
  auto c = start_member(a.get());
  ASSERT_EQ(a->create_key("quick", "aes-256-gcm", allow_me_everything()), 201);
  int status = 0;
  for (Daemon* d : {b.get(), c.get()})
    ASSERT_TRUE(time_until([&] { return get_json(d->service(), "/v1/keys/quick", status).is_object() && status == 200; }));
  auto proposed = a->admin().call("POST", "/v1/admin/requests",
                                  json::serialize(json::value{{"operation", "rotate-key"}, {"params", {{"name", "quick"}}}}));
  ASSERT_EQ(proposed->status, 201) << proposed->body;
  const auto body = json::parse(proposed->body);
  const std::string id(body.at("request").at("id").as_string());
  const auto challenge = base64_decode(std::string(body.at("challenge").as_string())).value();
  // Signed before either approval is sent, so that the two follow each other at once.
  auto signed_by = [&](const std::string& op) {
    auto sig = client::sign_with_key_file(a->operator_key(op), std::string(challenge.begin(), challenge.end()));
    return json::serialize(json::value{{"operator", op}, {"signature", base64_encode(sig.value())}});
  };
  const std::string alice = signed_by("alice"), bob = signed_by("bob");
  auto first = b->admin().call("POST", "/v1/admin/requests/" + id + "/approvals", alice);
  auto last = c->admin().call("POST", "/v1/admin/requests/" + id + "/approvals", bob);
  ASSERT_EQ(first->status, 200) << first->body;
  ASSERT_EQ(last->status, 200) << last->body;
  EXPECT_EQ(json::parse(last->body).at("request").at("state").as_string(), "executed") << last->body;
  for (Daemon* d : {a.get(), b.get(), c.get()}) {
    EXPECT_TRUE(time_until([&] {
      auto shown = get_json(d->admin(), "/v1/admin/requests/" + id, status);
      return status == 200 && shown.at("request").at("state") == "executed";
    })) << d->log();
    EXPECT_TRUE(time_until([&] { return get_json(d->service(), "/v1/keys/quick", status).at("current_version") == 2; }));
  }
  EXPECT_EQ(get_json(a->service(), "/v1/keys/quick", status).at("current_version"), 2) << "ran twice";
}

// A usage limit holds for the fleet: three daemons wrapping at once under a key limited to 50
// encryptions per version make at most 50 with version 1 between them, and each is then refused
// (or, once the lease holder has rotated the key, wraps with version 2).
TEST_F(FleetE2E, AUsageLimitHoldsForTheWholeFleet) {
  auto a = start_member(nullptr);
  auto b = start_member(a.get());
  auto c = start_member(a.get());
  ASSERT_EQ(a->admin_operation("create-key", {{"name", "limited"},
                                              {"algorithm", "aes-256-gcm"},
                                              {"usage_limit", 50},
                                              {"policy", json::parse(allow_me_everything())}})
                .first,
            201);
  std::vector<Daemon*> fleet{a.get(), b.get(), c.get()};
  int status = 0;
  for (Daemon* d : fleet)
    ASSERT_TRUE(time_until([&] { return get_json(d->service(), "/v1/keys/limited", status).is_object() && status == 200; }));
  struct Tally {
    int v1 = 0, refused = 0, later_version = 0, other = 0;
    std::string other_body;
  };
  std::vector<Tally> tallies(fleet.size());
  std::atomic<int> ready{0};
  std::vector<std::thread> threads;
  for (std::size_t i = 0; i < fleet.size(); ++i)
    threads.emplace_back([&, i] {
      ++ready;
      while (ready.load() < static_cast<int>(fleet.size())) std::this_thread::yield();
      Tally& t = tallies[i];
      const auto deadline = Clock::now() + std::chrono::seconds(20);
      while (Clock::now() < deadline) {
        auto [s, r] = fleet[i]->post("/v1/keys/limited/wrap", {{"plaintext", "aGk="}});
        if (s == 200 && r.at("key_version") == 1) {
          ++t.v1;
          continue;
        }
        if (s == 200) ++t.later_version;
        else if (s == 409) ++t.refused;
        else {
          ++t.other;
          t.other_body = std::to_string(s) + " " + json::serialize(r);
        }
        return;
      }
    });
  for (auto& t : threads) t.join();
  int total = 0;
  for (std::size_t i = 0; i < fleet.size(); ++i) {
    const auto& t = tallies[i];
    std::printf("[fleet] usage limit 50: daemon %c made %d wraps with v1, then %s\n", static_cast<char>('A' + i), t.v1,
                t.refused ? "was refused (409)" : t.later_version ? "wrapped with v2" : "stopped otherwise");
    EXPECT_EQ(t.other, 0) << t.other_body;
    EXPECT_EQ(t.refused + t.later_version, 1) << "daemon " << i << " never stopped using version 1";
    total += t.v1;
  }
  std::printf("[fleet] usage limit 50: %d wraps with v1 across the fleet\n", total);
  EXPECT_LE(total, 50);
  EXPECT_GT(total, 0);
  // The count every daemon shows is the fleet's.
  for (Daemon* d : fleet) {
    auto meta = get_json(d->service(), "/v1/keys/limited", status);
    EXPECT_EQ(meta.at("versions").at(0).at("encryptions"), 50) << json::serialize(meta);
  }
}

int destroy_records(const Daemon& d, const std::string& key) {
  int n = 0;
  for (const auto& r : d.audit_records()) n += r.at("type") == "lifecycle.destroy" && r.contains("key") && r.at("key").as_string() == key;
  return n;
}

// A member whose sync lags (held back here by a fault delay) still proposes and runs admin changes
// against the keys as the shared store holds them: a key created on A a moment ago can be rotated
// through B before B's data plane has heard of it, and a second rotation through B after one on A
// makes version 3, not a clash over version 2.
TEST_F(FleetE2E, AdminChangesOnALaggingMemberStartFromTheSharedStateNotItsView) {
  auto a = start_member(nullptr);
  auto b_options = fleet_options(a.get());
  b_options.env["CUSTODY_FAULT_DELAY"] = "fleet-sync.reload:5000";
  Daemon b(b_options);
  int status = 0;
  ASSERT_EQ(a->create_key("lagged", "aes-256-gcm", allow_me_everything()), 201);
  get_json(b.service(), "/v1/keys/lagged", status);
  ASSERT_EQ(status, 403) << "B's view was meant to lag behind A's change (an unknown key is refused as 403)";

  auto rotated = b.admin_operation("rotate-key", {{"name", "lagged"}});
  ASSERT_EQ(rotated.first, 201) << json::serialize(rotated.second);
  auto seen = get_json(b.service(), "/v1/keys/lagged", status);
  ASSERT_EQ(status, 200) << json::serialize(seen);
  EXPECT_EQ(seen.at("current_version"), 2);
  ASSERT_EQ(a->admin_operation("rotate-key", {{"name", "lagged"}}).first, 201);
  rotated = b.admin_operation("rotate-key", {{"name", "lagged"}});
  ASSERT_EQ(rotated.first, 201) << json::serialize(rotated.second);
  EXPECT_EQ(get_json(b.service(), "/v1/keys/lagged", status).at("current_version"), 4);
  // What B made is a real key version: A, whose view is current, wraps with it and B unwraps.
  ASSERT_TRUE(time_until([&] { return get_json(a->service(), "/v1/keys/lagged", status).at("current_version") == 4; }));
  auto wrapped = a->post("/v1/keys/lagged/wrap", {{"plaintext", "bGFn"}});
  ASSERT_EQ(wrapped.first, 200) << json::serialize(wrapped.second);
  auto opened = b.post("/v1/keys/lagged/unwrap", {{"ciphertext", wrapped.second.at("ciphertext")}});
  ASSERT_EQ(opened.first, 200) << json::serialize(opened.second);
  EXPECT_EQ(opened.second.at("plaintext").as_string(), "bGFn");
}

// The lease holder's scheduled work reads the shared store too: a destruction scheduled through
// B is carried out by a lagging A on its next pass, not once A's sync has caught up.
TEST_F(FleetE2E, ALaggingLeaseHolderDestroysWhatIsDueWithoutWaitingForItsSync) {
  const char* fast = "lifecycle:\n  min_destruction_wait: 0s\n  check_interval: 100ms\n";
  auto a_options = fleet_options(nullptr);
  a_options.extra_yaml = fast;
  a_options.env["CUSTODY_FAULT_DELAY"] = "fleet-sync.reload:8000";
  Daemon a(a_options);  // started first: it holds the lifecycle lease
  auto b_options = fleet_options(&a);
  b_options.extra_yaml = fast;
  Daemon b(b_options);
  int status = 0;
  ASSERT_EQ(b.create_key("doomed", "aes-256-gcm", allow_me_everything()), 201);
  ASSERT_EQ(b.admin_operation("schedule-destruction", {{"name", "doomed"}, {"wait_seconds", 0}}).first, 201);
  // Well inside the 8 s A's sync is held back, and many passes of a 100 ms scheduler.
  auto took = time_until([&] { return get_json(b.service(), "/v1/keys/doomed", status).at("state") == "destroyed"; },
                         std::chrono::seconds(4));
  ASSERT_TRUE(took) << a.log();
  std::printf("[fleet] a lagging lease holder destroyed a due key %lld ms after it was scheduled\n",
              static_cast<long long>(took->count()));
}

// A member starting recovers only its own interrupted changes and those of members that are gone:
// A is held between generating a key's token object and committing the key (its intent recorded)
// while C starts. C must leave the object alone; the key A then acknowledges works everywhere.
TEST_F(FleetE2E, AMemberStartingWhileAnotherIsMidChangeLeavesThatChangeAlone) {
  auto a_options = fleet_options(nullptr);
  a_options.env["CUSTODY_FAULT_DELAY"] = "create-key.after-generate:8000";
  Daemon a(a_options);
  int created = 0;
  std::thread create([&] { created = a.create_key("in-flight", "aes-256-gcm", allow_me_everything()); });
  const auto intent_recorded = [&] {
    return bool(Cluster::get()->execute(
        database_, "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM intents) THEN RAISE EXCEPTION 'none'; END IF; END $$"));
  };
  const bool held = time_until(intent_recorded).has_value();
  std::unique_ptr<Daemon> c;
  if (held) c = start_member(&a);  // recovers at start, while A's change is in flight
  const bool still_held = held && intent_recorded();
  create.join();
  ASSERT_TRUE(held) << "A never recorded its intent:\n" << a.log();
  ASSERT_TRUE(still_held) << "C started after A's window closed; the test proved nothing";
  ASSERT_EQ(created, 201) << a.log() << "\n---- C:\n" << c->log();
  EXPECT_EQ(wrap_status(a, "in-flight"), 200) << a.log();
  EXPECT_TRUE(time_until([&] { return wrap_status(*c, "in-flight") == 200; })) << c->log();
  const auto report = json::parse(c->admin().call("POST", "/v1/admin/keys/check")->body);
  EXPECT_TRUE(report.at("missing").as_array().empty()) << json::serialize(report);
  EXPECT_EQ(c->log().find("rolled back"), std::string::npos) << c->log();
}

// Scheduled work runs on the daemon holding the lease only; when it dies, another takes over.
TEST_F(FleetE2E, DueDestructionsRunOnOneDaemonAndAreTakenOverWhenItDies) {
  const char* fast = "lifecycle:\n  min_destruction_wait: 0s\n  check_interval: 100ms\n";
  auto a_options = fleet_options(nullptr);
  a_options.extra_yaml = fast;
  auto a = std::make_unique<Daemon>(a_options);
  auto b_options = fleet_options(a.get());
  b_options.extra_yaml = fast;
  Daemon b(b_options);
  int status = 0;
  auto destroyed_on = [&](Daemon& d, const std::string& key) {
    return time_until([&] { return get_json(d.service(), "/v1/keys/" + key, status).at("state") == "destroyed"; });
  };
  ASSERT_EQ(a->create_key("doomed", "aes-256-gcm", allow_me_everything()), 201);
  ASSERT_EQ(b.admin_operation("schedule-destruction", {{"name", "doomed"}, {"wait_seconds", 0}}).first, 201);
  ASSERT_TRUE(destroyed_on(*a, "doomed")) << a->log();
  ASSERT_TRUE(destroyed_on(b, "doomed")) << b.log();
  // Several passes of both schedulers later, still one destruction, by the lease holder A.
  std::this_thread::sleep_for(std::chrono::milliseconds(500));  // let any second run show itself
  EXPECT_EQ(destroy_records(*a, "doomed"), 1);
  EXPECT_EQ(destroy_records(b, "doomed"), 0);

  a->kill_hard();
  ASSERT_EQ(b.create_key("next", "aes-256-gcm", allow_me_everything()), 201);
  ASSERT_EQ(b.admin_operation("schedule-destruction", {{"name", "next"}, {"wait_seconds", 0}}).first, 201);
  auto took = destroyed_on(b, "next");
  ASSERT_TRUE(took) << b.log();
  std::printf("[fleet] B took over scheduled work %lld ms after the destruction was due\n", static_cast<long long>(took->count()));
  EXPECT_EQ(destroy_records(b, "next"), 1);
}

// custodyd --check-config accepts a fleet member's state section, and refuses a password file open
// to others and a password written in the dsn, naming the key.
TEST_F(FleetE2E, CheckConfigValidatesTheStateSection) {
  auto a = start_member(nullptr);
  const std::string config = read_file(a->config_path());
  auto check = [&](const std::string& text, const std::string& out) {
    write_file(a->dir() + "/check.yaml", text);
    return run(std::string(CUSTODYD_PATH) + " --check-config --config " + a->dir() + "/check.yaml >" + out + " 2>&1");
  };
  EXPECT_EQ(check(config, a->dir() + "/good.out"), 0) << read_file(a->dir() + "/good.out");

  const std::string loose = a->dir() + "/loose-password";
  write_file(loose, "secret\n");
  ASSERT_EQ(::chmod(loose.c_str(), 0644), 0);
  std::string with_loose = config;
  const auto file_at = with_loose.find("password_file: ") + std::string("password_file: ").size();
  with_loose.replace(file_at, with_loose.find('\n', file_at) - file_at, loose);
  EXPECT_NE(check(with_loose, a->dir() + "/loose.out"), 0);
  EXPECT_NE(read_file(a->dir() + "/loose.out").find("state.password_file"), std::string::npos)
      << read_file(a->dir() + "/loose.out");

  std::string with_password = config;
  with_password.insert(with_password.find("dsn: \"") + 6, "password=hunter2 ");
  EXPECT_NE(check(with_password, a->dir() + "/inline.out"), 0);
  const std::string inline_out = read_file(a->dir() + "/inline.out");
  EXPECT_NE(inline_out.find("state.dsn"), std::string::npos) << inline_out;
  EXPECT_EQ(inline_out.find("hunter2"), std::string::npos) << "the password must not be echoed: " << inline_out;

  // state.max_staleness: a duration (0s allowed: fail closed at once), for backend postgresql only.
  std::string with_bound = config;
  with_bound.insert(with_bound.find("  dsn: "), "  max_staleness: 0s\n");
  EXPECT_EQ(check(with_bound, a->dir() + "/bound.out"), 0) << read_file(a->dir() + "/bound.out");
  std::string with_bad_bound = config;
  with_bad_bound.insert(with_bad_bound.find("  dsn: "), "  max_staleness: soon\n");
  EXPECT_NE(check(with_bad_bound, a->dir() + "/bad-bound.out"), 0);
  EXPECT_NE(read_file(a->dir() + "/bad-bound.out").find("state.max_staleness"), std::string::npos)
      << read_file(a->dir() + "/bad-bound.out");
}

// A host's SQLite state moved into PostgreSQL: a daemon on the database serves the same keys and
// opens what the SQLite daemon wrapped; a second migration into the now non-empty target is refused.
TEST_F(FleetE2E, MigrateStateMovesAHostsSqliteStateIntoPostgresql) {
  Daemon host;  // SQLite, the default
  ASSERT_EQ(host.create_key("moved", "aes-256-gcm", allow_me_everything()), 201);
  ASSERT_EQ(host.admin_operation("rotate-key", {{"name", "moved"}}).first, 201);
  auto [s, wrapped] = host.post("/v1/keys/moved/wrap", {{"plaintext", "bW92ZWQ="}});
  ASSERT_EQ(s, 200);
  ASSERT_EQ(host.terminate(), 0);

  const auto settings = Cluster::get()->settings(database_);
  const std::string migrate = std::string(CUSTODYCTL_PATH) + " admin migrate-state --from " + host.dir() +
                              "/state.db --dsn \"" + settings.dsn + "\" --password-file " + settings.password_file;
  ASSERT_EQ(run(migrate + " >" + host.dir() + "/migrate.out 2>&1"), 0) << read_file(host.dir() + "/migrate.out");
  EXPECT_NE(run(migrate + " >" + host.dir() + "/again.out 2>&1"), 0);
  EXPECT_NE(read_file(host.dir() + "/again.out").find("not empty"), std::string::npos) << read_file(host.dir() + "/again.out");

  auto member = start_member(&host);
  int status = 0;
  auto meta = get_json(member->service(), "/v1/keys/moved", status);
  ASSERT_EQ(status, 200) << member->log();
  EXPECT_EQ(meta.at("current_version"), 2);
  auto [s2, opened] = member->post("/v1/keys/moved/unwrap", {{"ciphertext", wrapped.at("ciphertext")}});
  ASSERT_EQ(s2, 200) << json::serialize(opened);
  EXPECT_EQ(opened.at("plaintext").as_string(), "bW92ZWQ=");
}

// state.max_staleness 2s: with the database stopped, wraps go on from the last synchronised view,
// then answer 503 (with Retry-After, audited, health unavailable) once the view is older than
// the bound, and work again when the database returns, without a restart.
TEST_F(FleetE2E, PastMaxStalenessTheDataPlaneAnswers503UntilTheDatabaseReturns) {
  auto options = fleet_options(nullptr);
  options.state_yaml += "  max_staleness: 2s\n";
  Daemon a(options);
  ASSERT_EQ(a.create_key("fresh", "aes-256-gcm", allow_me_everything()), 201);
  ASSERT_EQ(wrap_status(a, "fresh"), 200);  // takes a usage block while the database is there
  ASSERT_TRUE(Cluster::get()->stop());
  const auto stopped_at = Clock::now();
  EXPECT_EQ(wrap_status(a, "fresh"), 200) << "within the bound the last synchronised view serves";
  std::optional<client::HttpReply> refused;
  while (Clock::now() - stopped_at < std::chrono::seconds(10)) {
    auto r = a.service().call("POST", "/v1/keys/fresh/wrap", R"({"plaintext": "aGk="})");
    ASSERT_TRUE(r) << r.error();
    if (r->status == 200) continue;
    refused = *r;
    break;
  }
  const auto after = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - stopped_at);
  ASSERT_TRUE(refused) << "still serving 10 s after the database went away:\n" << a.log();
  std::printf("[fleet] max_staleness 2s: first 503 %lld ms after the database stopped\n",
              static_cast<long long>(after.count()));
  EXPECT_EQ(refused->status, 503) << refused->body;
  EXPECT_EQ(json::parse(refused->body).at("error").at("code"), "unavailable") << refused->body;
  EXPECT_TRUE(refused->retry_after) << "a retry helps once the database is back";
  // The bound is measured from the last moment the view was known current (at most one feed wait
  // before the failure was seen), so the refusal comes at about 2 s, never long before.
  EXPECT_GE(after, std::chrono::milliseconds(1500));
  EXPECT_LE(after, std::chrono::milliseconds(4000));
  int status = 0;
  auto health = get_json(a.service(), "/v1/health", status);
  EXPECT_EQ(status, 503) << json::serialize(health);
  EXPECT_EQ(health.at("status"), "unavailable");
  EXPECT_EQ(health.at("fleet_sync").at("stale"), true) << json::serialize(health);
  bool audited = false;
  for (const auto& r : a.audit_records())
    audited = audited || (r.at("type") == "wrap" && r.at("result") == "unavailable");
  EXPECT_TRUE(audited) << "the refused wrap has its audit record";

  ASSERT_TRUE(Cluster::get()->restart());
  const auto restarted_at = Clock::now();
  EXPECT_TRUE(time_until([&] { return wrap_status(a, "fresh") == 200; }, std::chrono::seconds(15))) << a.log();
  std::printf("[fleet] max_staleness 2s: serving again %lld ms after the database restarted\n",
              static_cast<long long>(
                  std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - restarted_at).count()));
  health = get_json(a.service(), "/v1/health", status);
  EXPECT_EQ(status, 200) << json::serialize(health);
  EXPECT_EQ(health.at("fleet_sync").at("in_sync"), true);
  EXPECT_TRUE(a.running());
}

// The database away: admin operations fail closed at once, the data plane serves from memory, and
// service resumes by itself when the database returns. Last: it stops the shared cluster.
TEST_F(FleetE2E, WithTheDatabaseAwayAdminFailsClosedAndServiceResumesWithoutARestart) {
  auto a = start_member(nullptr);
  ASSERT_EQ(a->create_key("steady", "aes-256-gcm", allow_me_everything()), 201);
  ASSERT_EQ(wrap_status(*a, "steady"), 200);  // takes a usage block while the database is there
  ASSERT_TRUE(Cluster::get()->stop());
  const auto refused_at = Clock::now();
  auto [s, body] = a->admin_operation("create-key", {{"name", "later"}, {"algorithm", "aes-256-gcm"}});
  EXPECT_EQ(s, 503) << json::serialize(body);
  std::printf("[fleet] admin refused %lld ms after the database went away\n",
              static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - refused_at).count()));
  EXPECT_EQ(wrap_status(*a, "steady"), 200) << "the data plane should serve from memory";
  ASSERT_TRUE(Cluster::get()->restart());
  EXPECT_TRUE(time_until([&] { return a->create_key("later", "aes-256-gcm", allow_me_everything()) == 201; }))
      << a->log();
  EXPECT_TRUE(a->running());
}

}  // namespace
