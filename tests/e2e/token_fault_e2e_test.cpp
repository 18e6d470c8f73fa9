// The token goes away and comes back: requests fail closed with 503, health says unavailable,
// and service resumes by itself (module reset, new sessions, login, objects found again) without
// a restart. The fault comes from the forwarding shim over SoftHSMv2.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <thread>

#include "common/base64.h"
#include "daemon/core/keys/key.h"
#include "tests/support/daemon_process.h"
#include "tests/support/metric_value.h"

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

// SoftHSMv2's object file: a big-endian u64 generation, then attributes, each a u64 PKCS#11 type,
// a u64 kind and a value (1: one byte; 2: u64; 3 and 4: u64 length and bytes; 5: u64 count and
// u64s). The offsets where each attribute ends.
std::vector<std::size_t> softhsm_attribute_ends(const std::string& file) {
  auto u64 = [&](std::size_t at) {
    std::uint64_t v = 0;
    for (std::size_t i = 0; i < 8 && at + i < file.size(); ++i) v = v << 8 | static_cast<unsigned char>(file[at + i]);
    return v;
  };
  std::vector<std::size_t> ends;
  std::size_t at = 8;
  while (at + 16 <= file.size()) {
    const auto kind = u64(at + 8);
    at += 16;
    if (kind == 1) at += 1;
    else if (kind == 2) at += 8;
    else if (kind == 3 || kind == 4) at += 8 + u64(at);
    else if (kind == 5) at += 8 + 8 * u64(at);
    else break;
    ends.push_back(at);
  }
  return ends;
}

// SoftHSMv2 runs inside custodyd and rewrites an object's file as the object is made: a process
// killed in the middle leaves a file that holds only the first attributes. The token lists such
// an object but cannot describe it (C_GetAttributeValue: CKR_ATTRIBUTE_VALUE_INVALID).
// custodyd used to refuse to start on it ("cannot check the keys against the token: the token
// refused the operation (object inventory)"); it now starts, serves, and reports it.
TEST(TokenFaultE2E, AnObjectTornByACrashIsReportedAsAStrayAndTheDaemonStillStarts) {
  Daemon d;
  ASSERT_EQ(d.create_key("k", "aes-256-gcm", allow_me_everything()), 201);
  auto [wrapped, blob] = d.post("/v1/keys/k/wrap", {{"plaintext", "aGk="}});
  ASSERT_EQ(wrapped, 200);
  ASSERT_EQ(d.terminate(), 0);

  std::string slot;  // the token's own directory, beside its token.object
  for (const auto& e : std::filesystem::recursive_directory_iterator(std::filesystem::path(d.token().conf).parent_path() / "tokens"))
    if (e.path().filename() == "token.object") slot = e.path().parent_path().string();
  ASSERT_FALSE(slot.empty());
  std::string whole;  // the largest object: the secret key
  for (const auto& e : std::filesystem::directory_iterator(slot))
    if (e.path().extension() == ".object" && e.path().filename() != "token.object") {
      std::string bytes = read_file(e.path().string());
      if (bytes.size() > whole.size()) whole = std::move(bytes);
    }
  const auto ends = softhsm_attribute_ends(whole);
  ASSERT_GE(ends.size(), 4u);
  write_file(slot + "/0badc0de-0000-4000-8000-000000000001.object", whole.substr(0, ends[0]));
  write_file(slot + "/0badc0de-0000-4000-8000-000000000003.object", whole.substr(0, ends[2]));

  ASSERT_NO_THROW(d.start()) << d.log();
  auto [unwrapped, plain] = d.post("/v1/keys/k/unwrap", {{"ciphertext", blob.at("ciphertext")}});
  EXPECT_EQ(unwrapped, 200);
  EXPECT_EQ(plain.at("plaintext").as_string(), "aGk=");
  auto report = json::parse(d.admin().call("POST", "/v1/admin/keys/check")->body).as_object();
  EXPECT_FALSE(report.at("clean").as_bool());
  EXPECT_TRUE(report.at("missing").as_array().empty());
  EXPECT_TRUE(report.at("altered").as_array().empty());
  int unreadable = 0;
  for (const auto& s : report.at("strays").as_array())
    if (std::string(s.as_string()).starts_with("unreadable token object")) ++unreadable;
  EXPECT_EQ(unreadable, 2) << json::serialize(report);
  EXPECT_NE(d.log().find("unreadable token object"), std::string::npos);
}

// Daemons starting together on one SoftHSMv2 token can catch it in the middle of another
// process's write: C_GetTokenInfo or C_Login answer CKR_GENERAL_ERROR for a moment
// (p11::quirks::may_be_a_shared_store_race; the shim plays it). Opening the token tries again a
// few times; a token that keeps failing is still fatal, with the token's answer.
TEST(TokenFaultE2E, OpeningATokenThatRacesAnotherProcessIsTriedAgainAndAPersistentFailureIsFatal) {
  for (const char* call : {"C_GetTokenInfo", "C_Login"}) {
    SCOPED_TRACE(call);
    DaemonOptions o;
    o.module = CUSTODY_FAULT_SHIM;
    o.env["CUSTODY_SHIM_RACES"] = std::string(call) + ":2";
    std::unique_ptr<Daemon> d;
    ASSERT_NO_THROW(d = std::make_unique<Daemon>(o));
    EXPECT_EQ(d->create_key("k", "aes-256-gcm", allow_me_everything()), 201);
  }
  DaemonOptions o;
  o.module = CUSTODY_FAULT_SHIM;
  o.env["CUSTODY_SHIM_RACES"] = "C_Login:1000";
  try {
    Daemon never(o);
    FAIL() << "custodyd started although every C_Login failed";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("cannot open a logged-in session: C_Login: CKR_GENERAL_ERROR"), std::string::npos)
        << e.what();
  }
}

// On SoftHSMv2 an object not found may be a stale view of the store another process wrote, so the
// module starts again and the call is tried once more (p11::quirks). A peer that keeps asking for a
// key whose object another process really destroyed must not keep the module restarting under
// every other caller: one restart, then at most one more every 5 s.
TEST(TokenFaultE2E, AKeyWhoseObjectAnotherProcessDestroyedRestartsTheModuleAtMostOnceEveryFiveSeconds) {
  Daemon d;
  ASSERT_EQ(d.create_key("k", "aes-256-gcm", allow_me_everything()), 201);
  auto [wrapped, blob] = d.post("/v1/keys/k/wrap", {{"plaintext", "aGk="}});
  ASSERT_EQ(wrapped, 200);
  if (d.log().find("SoftHSM") == std::string::npos) GTEST_SKIP() << "only SoftHSMv2's view of its store goes stale";
  ASSERT_EQ(run("SOFTHSM2_CONF='" + d.token().conf + "' pkcs11-tool --module " + CUSTODY_SOFTHSM_MODULE + " --token-label " +
                d.token().label + " --login --pin " + d.token().pin + " --delete-object --type secrkey --label '" +
                core::object_label("k", 1) + "' >/dev/null 2>&1"),
            0);
  const double before = metric_value(d, "custody_token_resets_total");
  const auto started = std::chrono::steady_clock::now();
  for (int i = 0; i < 40; ++i) {
    auto [status, body] = d.post("/v1/keys/k/unwrap", {{"ciphertext", blob.at("ciphertext")}});
    ASSERT_EQ(status, 500) << json::serialize(body);
    ASSERT_NE(json::serialize(body).find("missing"), std::string::npos) << json::serialize(body);
  }
  const auto seconds = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - started).count();
  const double restarts = metric_value(d, "custody_token_resets_total") - before;
  EXPECT_GE(restarts, 1) << "the first miss looks again on a fresh module";
  EXPECT_LE(restarts, 1 + seconds / 5) << "40 misses in " << seconds << " s";
}
