// The audit log as a real daemon writes it: every request recorded with the contract's fields,
// replies only after the record, a chain custodyctl verifies, and fail-closed when unwritable.
#include <gtest/gtest.h>

#include <sys/resource.h>

#include <filesystem>
#include <regex>

#include "common/base64.h"
#include "common/hex.h"
#include "daemon/core/encryption_context.h"
#include "tests/support/daemon_process.h"

using namespace custody;
using namespace custody::test;
namespace json = boost::json;

namespace {

std::string b64(const std::string& s) { return base64_encode(to_bytes(s)); }

std::uint64_t metric(Daemon& d, const std::string& name) {
  auto r = d.service().call("GET", "/metrics");
  std::smatch m;
  std::regex re("\n" + name + " ([0-9]+)\n");
  if (!r || !std::regex_search(r->body, m, re)) throw std::runtime_error("no metric " + name);
  return std::stoull(m[1]);
}

}  // namespace

TEST(AuditE2E, EveryRequestIsRecordedWithTheContractFields) {
  Daemon d;
  ASSERT_EQ(d.create_key("demo", "aes-256-gcm", allow_me_everything()), 201);
  auto r = d.service().call("POST", "/v1/keys/demo/wrap", json::serialize(json::value{{"plaintext", b64("x")}, {"context", {{"t", "1"}}}}),
                            {{"X-Request-Id", "audit-me"}});
  ASSERT_EQ(r->status, 200);
  d.post("/v1/keys/nope/unwrap", {{"ciphertext", b64("x")}});
  const auto records = d.audit_records();
  ASSERT_GE(records.size(), 4u);  // start, create-key, wrap, unwrap
  EXPECT_EQ(records.front().at("type").as_string(), "daemon.start");
  const json::object* wrap = nullptr;
  for (const auto& rec : records)
    if (rec.at("request_id").as_string() == "audit-me") wrap = &rec;
  ASSERT_NE(wrap, nullptr);
  EXPECT_EQ(wrap->at("type").as_string(), "wrap");
  EXPECT_EQ(wrap->at("result").as_string(), "ok");
  EXPECT_EQ(wrap->at("key").as_string(), "demo");
  EXPECT_EQ(wrap->at("version").as_int64(), 1);
  EXPECT_EQ(wrap->at("client").at("uid").as_int64(), static_cast<std::int64_t>(::getuid()));
  EXPECT_EQ(wrap->at("client").at("pid").as_int64(), static_cast<std::int64_t>(::getpid()));
  EXPECT_EQ(wrap->at("context_sha256").as_string(), sha256_hex(core::encode_context({{"t", "1"}})));
  EXPECT_TRUE(std::regex_match(std::string(wrap->at("time").as_string()),
                               std::regex(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z)")));
  // No raw context value or plaintext is logged.
  EXPECT_EQ(read_file(d.audit_path()).find(b64("x")), std::string::npos);
  const auto& last = records.back();
  EXPECT_EQ(last.at("type").as_string(), "unwrap");
  EXPECT_EQ(last.at("result").as_string(), "not_found");
  EXPECT_EQ(last.at("key").as_string(), "nope");
  ASSERT_EQ(d.terminate(), 0);
  auto after = d.audit_records();
  ASSERT_GE(after.size(), 2u);
  EXPECT_EQ(after[after.size() - 2].at("type").as_string(), "daemon.stop");
  EXPECT_EQ(after.back().at("type").as_string(), "checkpoint");  // the closing signed checkpoint
}

TEST(AuditE2E, CustodyctlVerifiesTheChainAndFindsAFlippedByte) {
  Daemon d;
  ASSERT_EQ(d.create_key("demo", "aes-256-gcm", allow_me_everything()), 201);
  for (int i = 0; i < 20; ++i) d.post("/v1/keys/demo/wrap", {{"plaintext", b64("n" + std::to_string(i))}});
  ASSERT_EQ(d.terminate(), 0);
  const std::string ctl = std::string(CUSTODYCTL_PATH) + " audit verify ";
  EXPECT_EQ(run(ctl + d.audit_path() + " >/dev/null"), 0);
  std::string text = read_file(d.audit_path());
  const std::size_t tenth_line = [&] {
    std::size_t pos = 0;
    for (int i = 0; i < 9; ++i) pos = text.find('\n', pos) + 1;
    return pos;
  }();
  text[tenth_line + 40] ^= 0x01;
  const std::string tampered = d.dir() + "/tampered.jsonl";
  write_file(tampered, text);
  EXPECT_EQ(run(ctl + tampered + " > " + d.dir() + "/verify.out"), 4);
  const auto out = read_file(d.dir() + "/verify.out");
  EXPECT_TRUE(out.find("line 10") != std::string::npos || out.find("line 11") != std::string::npos) << out;
}

TEST(AuditE2E, WhenTheLogCannotBeWrittenRequestsFailClosed) {
  DaemonOptions o;
  o.durability = "always";
  Daemon d(o);
  ASSERT_EQ(d.create_key("demo", "aes-256-gcm", allow_me_everything()), 201);
  ASSERT_EQ(d.post("/v1/keys/demo/wrap", {{"plaintext", b64("first")}}).first, 200);
  // From now on the daemon may not grow any file past this size: the audit log fills up first.
  std::uintmax_t largest = 0;
  for (const auto& entry : std::filesystem::directory_iterator(d.dir()))
    if (entry.is_regular_file()) largest = std::max(largest, entry.file_size());
  rlimit limit{largest + 16 * 1024, largest + 16 * 1024};
  ASSERT_EQ(::prlimit(d.pid(), RLIMIT_FSIZE, &limit, nullptr), 0);
  int status = 200;
  for (int i = 0; i < 2000 && status == 200; ++i)
    status = d.post("/v1/keys/demo/wrap", {{"plaintext", b64(std::string(100, 'p'))}}).first;
  ASSERT_EQ(status, 503) << "the audit log never filled up";
  const auto token_ops = metric(d, "custody_token_operations_total");
  for (int i = 0; i < 5; ++i) {
    auto [s, body] = d.post("/v1/keys/demo/wrap", {{"plaintext", b64("must not run")}});
    EXPECT_EQ(s, 503);
    EXPECT_EQ(body.at("error").at("code").as_string(), "unavailable");
    auto [s2, body2] = d.post("/v1/keys/demo/datakey", {});
    EXPECT_EQ(s2, 503);
  }
  EXPECT_EQ(metric(d, "custody_token_operations_total"), token_ops) << "a key operation ran without an audit record";
  EXPECT_EQ(metric(d, "custody_audit_writable"), 0u);
  auto health = d.service().call("GET", "/v1/health");
  EXPECT_EQ(health->status, 503);
  // What is on disk is still a whole chain.
  EXPECT_EQ(run(std::string(CUSTODYCTL_PATH) + " audit verify " + d.audit_path() + " >/dev/null"), 0);
}
