// The token goes away and comes back: requests fail closed with 503, health says unavailable,
// and service resumes by itself (module reset, new sessions, login, objects found again) without
// a restart. The fault comes from the forwarding shim over SoftHSMv2.
#include <gtest/gtest.h>

#include <filesystem>
#include <thread>

#include "common/base64.h"
#include "tests/support/daemon_process.h"

using namespace custody;
using namespace custody::test;
namespace json = boost::json;

TEST(TokenFaultE2E, ServiceResumesByItselfWhenTheTokenReturns) {
  DaemonOptions o;
  o.module = CUSTODY_FAULT_SHIM;
  TempDir faults;
  const std::string fault_file = faults.path() + "/unplugged";
  o.env["CUSTODY_SHIM_FAULT_FILE"] = fault_file;
  Daemon d(o);
  ASSERT_EQ(d.create_key("k", "aes-256-gcm", allow_me_everything()), 201);
  auto [s0, blob] = d.post("/v1/keys/k/wrap", {{"plaintext", base64_encode(to_bytes("before"))}});
  ASSERT_EQ(s0, 200);

  write_file(fault_file, "");  // the token is unplugged
  auto [s1, refused] = d.post("/v1/keys/k/unwrap", {{"ciphertext", blob.at("ciphertext")}});
  EXPECT_EQ(s1, 503) << json::serialize(refused);
  EXPECT_EQ(refused.at("error").at("code").as_string(), "unavailable");
  auto health = d.service().call("GET", "/v1/health");
  EXPECT_EQ(health->status, 503);
  EXPECT_FALSE(json::parse(health->body).at("token").at("available").as_bool());
  EXPECT_TRUE(d.running());

  std::filesystem::remove(fault_file);  // and plugged in again
  int status = 0;
  for (int i = 0; i < 100 && status != 200; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    status = d.post("/v1/keys/k/unwrap", {{"ciphertext", blob.at("ciphertext")}}).first;
  }
  EXPECT_EQ(status, 200) << "service did not resume after the token came back";
  auto [s2, opened] = d.post("/v1/keys/k/unwrap", {{"ciphertext", blob.at("ciphertext")}});
  ASSERT_EQ(s2, 200);
  EXPECT_EQ(opened.at("plaintext").as_string(), base64_encode(to_bytes("before")));
  EXPECT_EQ(d.service().call("GET", "/v1/health")->status, 200);
  // Every refused request was still audited.
  int unavailable = 0;
  for (const auto& r : d.audit_records()) unavailable += r.at("result") == "unavailable";
  EXPECT_GE(unavailable, 1);
}

TEST(TokenFaultE2E, InitArgsReachTheModule) {
  DaemonOptions o;
  o.module = CUSTODY_FAULT_SHIM;
  o.init_args = "configdir='sql:/var/lib/custody/nssdb' flags=readOnly";
  o.env["CUSTODY_SHIM_REQUIRE_INIT_ARGS"] = o.init_args;
  Daemon d(o);  // starts only if C_Initialize saw exactly these init args
  EXPECT_EQ(d.service().call("GET", "/v1/health")->status, 200);

  DaemonOptions wrong = o;
  wrong.init_args = "something else";
  try {
    Daemon refused(wrong);
    ADD_FAILURE() << "a module that refuses the init args must stop custodyd at start";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("cannot initialize module"), std::string::npos) << e.what();
  }
}

// A token that makes its own AES-GCM IVs (the shim acting as one: "overwrite" replaces the IV it
// is given, as AWS CloudHSM does; "refuse" refuses it). A wrap's blob binds its IV in the AAD
// before the token sees it, so such a token cannot make one: the wrap must fail, never answer a
// blob whose header names an IV the token did not use (it would never unwrap).
TEST(TokenFaultE2E, AWrapOnATokenThatMakesItsOwnIvFailsInsteadOfAnsweringABlobThatNeverOpens) {
  for (const char* mode : {"overwrite", "refuse"}) {
    SCOPED_TRACE(mode);
    DaemonOptions o;
    o.module = CUSTODY_FAULT_SHIM;
    o.env["CUSTODY_SHIM_GCM_IV_FROM_TOKEN"] = mode;
    Daemon d(o);
    ASSERT_EQ(d.create_key("k", "aes-256-gcm", allow_me_everything()), 201);
    auto [status, body] = d.post("/v1/keys/k/wrap", {{"plaintext", base64_encode(to_bytes("never sealed"))}});
    EXPECT_EQ(status, 500) << json::serialize(body);
    EXPECT_FALSE(body.is_object() && body.as_object().contains("ciphertext")) << json::serialize(body);
    auto [dk_status, dk] = d.post("/v1/keys/k/datakey", {{"length", 32}});
    EXPECT_EQ(dk_status, 500) << json::serialize(dk);
    EXPECT_TRUE(d.running());
  }
}
