// Lifecycle through a real daemon: admin operations over the admin socket, automatic rotation,
// scheduled destruction, and kill -9 at every step of a change that touches the token.
#include <gtest/gtest.h>

#include <thread>

#include "common/base64.h"
#include "tests/support/daemon_process.h"
#include "tests/support/wall_clock.h"

using namespace custody;
using namespace custody::test;
namespace json = boost::json;

namespace {

// Fast lifecycle for tests: no minimum wait, a scheduler pass every 100 ms.
const char* kFastLifecycle = "lifecycle:\n  min_destruction_wait: 0s\n  check_interval: 100ms\n";

std::pair<int, json::value> admin(Daemon& d, const std::string& operation, json::object params) {
  return d.admin_operation(operation, std::move(params));
}

json::value show(Daemon& d, const std::string& key) {
  auto r = d.service().call("GET", "/v1/keys/" + key);
  return json::parse(r->body);
}

json::value check(Daemon& d) { return json::parse(d.admin().call("POST", "/v1/admin/keys/check")->body); }

template <class Pred>
bool eventually(Pred pred) {
  for (int i = 0; i < 300; ++i) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

}  // namespace

TEST(LifecycleE2E, AdminOperationsChangeWhatTheDataPlaneAllows) {
  Daemon d;
  ASSERT_EQ(d.create_key("k", "aes-256-gcm", allow_me_everything()), 201);
  auto [s0, blob] = d.post("/v1/keys/k/wrap", {{"plaintext", "aGk="}});
  ASSERT_EQ(admin(d, "disable-key", {{"name", "k"}}).first, 201);
  auto [s1, refused] = d.post("/v1/keys/k/wrap", {{"plaintext", "aGk="}});
  EXPECT_EQ(s1, 409);
  EXPECT_NE(refused.at("error").at("message").as_string().find("disabled"), std::string::npos);
  ASSERT_EQ(admin(d, "enable-key", {{"name", "k"}}).first, 201);
  ASSERT_EQ(admin(d, "rotate-key", {{"name", "k"}}).first, 201);
  ASSERT_EQ(admin(d, "set-min-decrypt-version", {{"name", "k"}, {"version", 2}}).first, 201);
  EXPECT_EQ(d.post("/v1/keys/k/unwrap", {{"ciphertext", blob.at("ciphertext")}}).first, 409);
  auto [s2, week] = admin(d, "schedule-destruction", {{"name", "k"}, {"wait_seconds", 3600}});
  EXPECT_EQ(s2, 400);  // below the 7-day default minimum
  ASSERT_EQ(admin(d, "schedule-destruction", {{"name", "k"}, {"wait_seconds", 7 * 86400}}).first, 201);
  EXPECT_EQ(show(d, "k").at("state").as_string(), "pending_destruction");
  EXPECT_EQ(d.post("/v1/keys/k/wrap", {{"plaintext", "aGk="}}).first, 409);
  auto health = json::parse(d.service().call("GET", "/v1/health")->body);
  EXPECT_EQ(health.at("alarms").at("pending_destruction_uses").as_int64(), 1);
  ASSERT_EQ(admin(d, "cancel-destruction", {{"name", "k"}}).first, 201);
  EXPECT_EQ(show(d, "k").at("state").as_string(), "disabled");
  EXPECT_EQ(admin(d, "frobnicate-key", {{"name", "k"}}).first, 400);
  EXPECT_EQ(admin(d, "rotate-key", {{"name", "nope"}}).first, 404);
  EXPECT_EQ(admin(d, "rotate-key", {{"name", "k"}, {"extra", 1}}).first, 400);
}

TEST(LifecycleE2E, UsageLimitRotatesAutomaticallyAndIsAudited) {
  DaemonOptions o;
  o.extra_yaml = kFastLifecycle;
  Daemon d(o);
  ASSERT_EQ(admin(d, "create-key", {{"name", "busy"}, {"algorithm", "aes-256-gcm"}, {"usage_limit", 25},
                                    {"policy", json::parse(allow_me_everything())}})
                .first,
            201);
  for (int i = 0; i < 25; ++i) ASSERT_EQ(d.post("/v1/keys/busy/wrap", {{"plaintext", "aGk="}}).first, 200);
  ASSERT_TRUE(eventually([&] { return show(d, "busy").at("current_version").as_int64() == 2; }));
  auto meta = show(d, "busy");
  EXPECT_EQ(meta.at("versions").at(1).at("reason").as_string(), "auto-rotated:usage");
  EXPECT_GE(meta.at("versions").at(0).at("encryptions").as_int64(), 25);
  bool audited = false;
  for (const auto& r : d.audit_records())
    audited = audited || (r.at("type").as_string() == "lifecycle.auto-rotate" && r.at("key").as_string() == "busy");
  EXPECT_TRUE(audited);
}

TEST(LifecycleE2E, DestructionDueWhileDownRunsAtStart) {
  DaemonOptions o;
  o.extra_yaml = "lifecycle:\n  min_destruction_wait: 1s\n  check_interval: 1h\n";
  Daemon d(o);
  ASSERT_EQ(d.create_key("doomed", "aes-256-gcm", allow_me_everything()), 201);
  auto [s, blob] = d.post("/v1/keys/doomed/wrap", {{"plaintext", "aGk="}});
  ASSERT_EQ(admin(d, "schedule-destruction", {{"name", "doomed"}, {"wait_seconds", 1}}).first, 201);
  const std::string destroy_at(show(d, "doomed").at("destroy_at").as_string());
  ASSERT_EQ(d.terminate(), 0);
  ASSERT_TRUE(wait_until_wall_clock(destroy_at)) << destroy_at;
  d.start();
  EXPECT_EQ(show(d, "doomed").at("state").as_string(), "destroyed");
  EXPECT_EQ(d.post("/v1/keys/doomed/unwrap", {{"ciphertext", blob.at("ciphertext")}}).first, 409);
  EXPECT_TRUE(check(d).at("clean").as_bool()) << json::serialize(check(d));
}

// kill -9 (an immediate _exit) at each step of each change; after a restart the state and the
// token agree, nothing is half made, and the approved change has happened exactly once (an
// approved request that had not committed is run again by recovery).
class CrashE2E : public ::testing::TestWithParam<const char*> {};

TEST_P(CrashE2E, StateAndTokenAgreeAfterACrash) {
  const std::string point = GetParam();
  DaemonOptions o;
  o.extra_yaml = kFastLifecycle;
  o.env["CUSTODY_FAULT_POINT"] = point;
  Daemon d(o);
  const bool creating = point.rfind("create-key", 0) == 0;
  const bool destroying = point.rfind("destroy-key", 0) == 0;
  if (creating) {
    EXPECT_EQ(d.create_key("k", "aes-256-gcm", allow_me_everything()), -1) << "the daemon should have died";
  } else {
    ASSERT_EQ(d.create_key("k", "aes-256-gcm", allow_me_everything()), 201);
    ASSERT_EQ(admin(d, "rotate-key", {{"name", "k"}}).first, destroying ? 201 : -1);
  }
  if (destroying) {
    ASSERT_EQ(admin(d, "schedule-destruction", {{"name", "k"}, {"wait_seconds", 0}}).first, 201);
  }
  ASSERT_EQ(d.wait_exit(), 86) << "the fault point was not reached:\n" << d.log();

  d.options().env.clear();
  d.start();
  auto c = check(d);
  EXPECT_TRUE(c.at("clean").as_bool()) << json::serialize(c);
  auto meta = json::parse(d.service().call("GET", "/v1/keys/k")->body);
  if (destroying) {
    EXPECT_EQ(meta.at("state").as_string(), "destroyed");
  } else {
    EXPECT_EQ(meta.at("current_version").as_int64(), creating ? 1 : 2) << json::serialize(meta);
    EXPECT_EQ(d.post("/v1/keys/k/wrap", {{"plaintext", "aGk="}}).first, 200);
    const auto requests = json::parse(d.admin().call("GET", "/v1/admin/requests")->body);
    for (const auto& item : requests.at("requests").as_array())
      EXPECT_EQ(item.at("request").at("state").as_string(), "executed");
  }
  bool recovery_audited = false;
  for (const auto& r : d.audit_records()) recovery_audited = recovery_audited || r.at("type").as_string() == "daemon.recovery";
  EXPECT_TRUE(recovery_audited);
}

INSTANTIATE_TEST_SUITE_P(EveryStep, CrashE2E,
                         ::testing::Values("create-key.after-intent", "create-key.after-generate",
                                           "rotate-key.after-intent", "rotate-key.after-generate",
                                           "destroy-key.after-intent", "destroy-key.after-first-object"),
                         [](const auto& info) {
                           std::string n = info.param;
                           for (auto& ch : n)
                             if (ch == '.' || ch == '-') ch = '_';
                           return n;
                         });

// A crash after the quorum is reached, before or after the operation ran: after a restart the
// operation has happened exactly once and the request says executed.
class AdminCrashE2E : public ::testing::TestWithParam<const char*> {};

TEST_P(AdminCrashE2E, ApprovedOperationsRunExactlyOnce) {
  DaemonOptions o;
  o.env["CUSTODY_FAULT_POINT"] = GetParam();
  Daemon d(o);
  EXPECT_EQ(d.create_key("once", "aes-256-gcm", allow_me_everything()), -1) << "the daemon should have died";
  ASSERT_EQ(d.wait_exit(), 86) << d.log();
  d.options().env.clear();
  d.start();
  auto meta = json::parse(d.service().call("GET", "/v1/keys/once")->body);
  EXPECT_EQ(meta.at("current_version").as_int64(), 1) << json::serialize(meta);
  auto list = json::parse(d.admin().call("GET", "/v1/admin/requests")->body);
  ASSERT_EQ(list.at("requests").as_array().size(), 1u);
  EXPECT_EQ(list.at("requests").at(0).at("request").at("state").as_string(), "executed");
  EXPECT_TRUE(check(d).at("clean").as_bool());
  EXPECT_EQ(d.post("/v1/keys/once/wrap", {{"plaintext", "aGk="}}).first, 200);
}

INSTANTIATE_TEST_SUITE_P(BothSides, AdminCrashE2E, ::testing::Values("admin.after-quorum", "admin.after-execute"),
                         [](const auto& info) {
                           std::string n = info.param;
                           for (auto& ch : n)
                             if (ch == '.' || ch == '-') ch = '_';
                           return n;
                         });
