// Start-up, walked (issue #15): custodyd starts once for each token call N of its start-up, with
// that one call failing (a transient CKR_DEVICE_ERROR from the fault shim), until a start meets no
// fault. Each such start either refuses, saying why on a critical log line, or serves honestly
// (a blob made before opens to the same bytes). Either way the next start without a fault finds
// everything acknowledged before it: the same keys and versions, the old blobs still open, and an
// audit chain that verifies.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdio>
#include <filesystem>
#include <string>

#include "common/base64.h"
#include "tests/support/daemon_process.h"

using namespace custody;
using namespace custody::test;
namespace json = boost::json;

namespace {

// "name:v1,v2;..." of the keys the admin socket lists: what must survive every start.
std::string key_summary(Daemon& d) {
  auto reply = d.admin().call("GET", "/v1/keys");
  if (!reply || reply->status != 200) return "unavailable";
  const auto listed = json::parse(reply->body);
  std::string out;
  for (const auto& key : listed.at("keys").as_array()) {
    out += std::string(key.at("name").as_string()) + ":";
    for (const auto& v : key.at("versions").as_array())
      out += std::to_string(v.at("version").as_int64()) + std::string(v.at("state").as_string()) + ",";
    out += ";";
  }
  return out;
}

std::string run_custodyctl_audit_verify(const std::string& audit_path) {
  const std::string command = std::string(CUSTODYCTL_PATH) + " audit verify " + audit_path + " 2>&1";
  FILE* pipe = ::popen(command.c_str(), "r");
  if (!pipe) return "popen failed";
  std::string out;
  char buf[512];
  while (std::fgets(buf, sizeof buf, pipe)) out += buf;
  const int status = ::pclose(pipe);
  return (WIFEXITED(status) && WEXITSTATUS(status) == 0 ? "OK " : "FAILED ") + out;
}

}  // namespace

TEST(StartupFaultWalkE2E, EveryTokenCallOfStartUpFailsClosedAndLosesNothing) {
  DaemonOptions o;
  o.module = CUSTODY_FAULT_SHIM;
  o.start_timeout = std::chrono::seconds(10);
  TempDir scratch;
  const std::string hit_file = scratch.path() + "/hit";
  o.env["CUSTODY_SHIM_FAIL_HIT_FILE"] = hit_file;
  Daemon d(o);

  // What start-up has to find again: two keys, one rotated, and blobs under both versions.
  ASSERT_EQ(d.create_key("k", "aes-256-gcm", allow_me_everything()), 201);
  ASSERT_EQ(d.create_key("h", "hmac-sha256", allow_me_everything()), 201);
  const auto plaintext = base64_encode(to_bytes("made before the walk"));
  auto [s1, old_blob] = d.post("/v1/keys/k/wrap", {{"plaintext", plaintext}});
  ASSERT_EQ(s1, 200);
  ASSERT_EQ(d.admin_operation("rotate-key", {{"name", "k"}}).first, 201);
  auto [s2, new_blob] = d.post("/v1/keys/k/wrap", {{"plaintext", plaintext}});
  ASSERT_EQ(s2, 200);
  const std::string keys_before = key_summary(d);
  ASSERT_NE(keys_before.find("k:1"), std::string::npos) << keys_before;
  ASSERT_EQ(d.terminate(), 0);

  const auto opens = [&](const json::value& blob) {
    auto [status, body] = d.post("/v1/keys/k/unwrap", {{"ciphertext", blob.at("ciphertext")}});
    return status == 200 && body.at("plaintext").as_string() == plaintext;
  };

  int faults_hit = 0, refused = 0, served = 0;
  for (int call = 1; call <= 400; ++call) {
    std::filesystem::remove(hit_file);
    d.options().env["CUSTODY_SHIM_FAIL_CALL"] = std::to_string(call);
    const auto log_before = d.log().size();
    bool started = true;
    std::string why;
    try {
      d.start();
    } catch (const std::runtime_error& e) {
      started = false;
      why = e.what();
    }
    if (!std::filesystem::exists(hit_file)) {
      // Past the last token call of start-up (and of the checks below): the walk is complete.
      ASSERT_TRUE(started) << "a start that met no fault must serve:\n" << why;
      ASSERT_EQ(d.terminate(), 0);
      break;
    }
    ++faults_hit;
    const std::string failed_call = read_file(hit_file);
    SCOPED_TRACE("start-up with token call " + std::to_string(call) + " (" + failed_call + ") failing");
    if (started) {
      ++served;
      // Serving after a transient fault is fine, serving something wrong is not.
      EXPECT_TRUE(opens(old_blob));
      EXPECT_TRUE(opens(new_blob));
      EXPECT_EQ(key_summary(d), keys_before);
      EXPECT_EQ(d.terminate(), 0);
    } else {
      ++refused;
      EXPECT_FALSE(d.running()) << "a start that failed must not leave custodyd half up";
      d.kill_hard();
      const std::string log = d.log().substr(log_before);
      EXPECT_NE(log.find(" critical "), std::string::npos) << "refused without saying why:\n" << log;
      EXPECT_EQ(log.find(" ready:"), std::string::npos) << log;
    }

    // The next start without a fault finds everything as it was.
    d.options().env.erase("CUSTODY_SHIM_FAIL_CALL");
    ASSERT_NO_THROW(d.start());
    EXPECT_EQ(key_summary(d), keys_before);
    EXPECT_TRUE(opens(old_blob));
    EXPECT_TRUE(opens(new_blob));
    ASSERT_EQ(d.terminate(), 0);
  }
  // The walk really walked: start-up makes dozens of token calls (slots, login, mechanisms,
  // the inventory, the attestation key, every version's attributes).
  EXPECT_GE(faults_hit, 20) << refused << " refused, " << served << " served";
  EXPECT_GE(refused, 1);
  std::printf("start-up walk: %d token calls failed one at a time: %d refused to start, %d served\n", faults_hit,
              refused, served);

  // The chain holds across every start, the refused ones included.
  const auto verified = run_custodyctl_audit_verify(d.audit_path());
  EXPECT_EQ(verified.rfind("OK ", 0), 0u) << verified;
}
