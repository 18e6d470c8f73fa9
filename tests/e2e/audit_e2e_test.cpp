// The audit log as a real daemon writes it: every request recorded with the contract's fields,
// replies only after the record, a chain custodyctl verifies, and fail-closed when unwritable.
#include <gtest/gtest.h>

#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <functional>
#include <regex>
#include <sstream>
#include <thread>

#include "common/base64.h"
#include "common/hex.h"
#include "daemon/core/crypto/encryption_context.h"
#include "tests/support/daemon_process.h"
#include "tests/support/metric_value.h"

using namespace custody;
using namespace custody::test;
namespace json = boost::json;

namespace {


std::uint64_t metric(Daemon& d, const std::string& name) { return static_cast<std::uint64_t>(metric_value(d, name)); }

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
  EXPECT_EQ(wrap->at("context_sha256").as_string(), sha256_hex(core::encode_context({{"t", "1"}})).value());
  EXPECT_TRUE(std::regex_match(std::string(wrap->at("time").as_string()),
                               std::regex(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z)")));
  // No raw context value or plaintext is logged.
  EXPECT_EQ(read_file(d.audit_path()).find(b64("x")), std::string::npos);
  const auto& last = records.back();
  EXPECT_EQ(last.at("type").as_string(), "unwrap");
  EXPECT_EQ(last.at("result").as_string(), "permission_denied");  // a missing key looks like a forbidden one
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

namespace {

std::vector<json::object> records_with_request_id(Daemon& d, const std::string& id) {
  std::vector<json::object> out;
  for (auto& r : d.audit_records())
    if (r.at("request_id").as_string() == id) out.push_back(std::move(r));
  return out;
}

std::string batch_of(const json::array& items) { return json::serialize(json::object{{"batch", items}}); }

}  // namespace

TEST(AuditE2E, ABatchRefusedToAUidWithoutRightsIsOneRecord) {
  if (::getuid() != 0) GTEST_SKIP() << "needs root to act as another uid";
  DaemonOptions o;
  o.service_group = "nogroup";  // uid 65534 may connect, and is refused by policy
  Daemon d(o);
  ASSERT_EQ(d.create_key("demo", "aes-256-gcm", allow_me_everything()), 201);
  ASSERT_EQ(::chmod(d.dir().c_str(), 0755), 0);
  json::array items;
  for (int i = 0; i < 256; ++i) items.push_back(json::object{{"plaintext", b64("x")}});
  const std::string body = batch_of(items);
  constexpr int kRequests = 4;
  const auto bytes_before = std::filesystem::file_size(d.audit_path());
  const int answered = run_as_nobody(d, [&](client::UnixHttpClient& c) {
    int ok = 0;
    for (int i = 0; i < kRequests; ++i) {
      auto r = c.call("POST", "/v1/keys/demo/wrap", body, {{"X-Request-Id", "refused-" + std::to_string(i)}});
      if (!r || r->status != 200) return -1;
      auto v = json::parse(r->body);
      const auto& results = v.at("batch").as_array();
      if (results.size() != 256) return -2;
      for (const auto& res : results)
        if (!res.as_object().contains("error")) return -3;
      ++ok;
    }
    return ok;
  });
  ASSERT_EQ(answered, kRequests);
  const auto bytes_after = std::filesystem::file_size(d.audit_path());
  // One record a request, under 1 KiB: refusals cannot be multiplied into audit volume.
  EXPECT_LT(bytes_after - bytes_before, kRequests * 1024u);
  for (int i = 0; i < kRequests; ++i) {
    auto records = records_with_request_id(d, "refused-" + std::to_string(i));
    ASSERT_EQ(records.size(), 1u) << "request " << i;
    const auto& rec = records[0];
    EXPECT_EQ(rec.at("type").as_string(), "wrap");
    EXPECT_EQ(rec.at("key").as_string(), "demo");
    EXPECT_EQ(rec.at("client").at("uid").as_int64(), 65534);
    const auto& code = rec.at("result").as_string();
    EXPECT_EQ(rec.at("refused").as_int64(), 256);
    const auto& errors = rec.at("errors").as_object();
    ASSERT_EQ(errors.size(), 1u) << json::serialize(rec);
    const auto& entry = errors.at(code).as_object();
    EXPECT_EQ(entry.at("count").as_int64(), 256);
    EXPECT_EQ(entry.at("first_index").as_int64(), 0);
    EXPECT_FALSE(entry.at("first_message").as_string().empty());
  }
  // Nothing the caller sent is in the log.
  EXPECT_EQ(read_file(d.audit_path()).find(b64("x") + "\""), std::string::npos);
}

TEST(AuditE2E, ABatchKeepsARecordPerItemThatTouchedTheKeyAndSummarisesTheRefusals) {
  Daemon d;
  ASSERT_EQ(d.create_key("demo", "aes-256-gcm", allow_me_everything()), 201);
  json::array items{json::object{{"plaintext", b64("one")}},
                    json::object{{"plaintext", "not base64!"}},
                    json::object{{"plaintext", b64("two")}},
                    json::object{{"plaintext", b64("x")}, {"bogus", 1}},
                    json::object{{"plaintext", b64("three")}}};
  auto r = d.service().call("POST", "/v1/keys/demo/wrap", batch_of(items), {{"X-Request-Id", "mixed"}});
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  const auto results = json::parse(r->body).at("batch").as_array();
  ASSERT_EQ(results.size(), 5u);
  auto records = records_with_request_id(d, "mixed");
  ASSERT_EQ(records.size(), 4u);
  std::vector<std::int64_t> item_indexes;
  const json::object* summary = nullptr;
  for (const auto& rec : records) {
    EXPECT_EQ(rec.at("type").as_string(), "wrap");
    if (rec.contains("refused")) {
      summary = &rec;
      continue;
    }
    EXPECT_EQ(rec.at("result").as_string(), "ok");
    EXPECT_EQ(rec.at("version").as_int64(), 1);
    EXPECT_TRUE(rec.contains("context_sha256"));
    item_indexes.push_back(rec.at("batch_index").as_int64());
  }
  EXPECT_EQ(item_indexes, (std::vector<std::int64_t>{0, 2, 4}));
  ASSERT_NE(summary, nullptr);
  EXPECT_EQ(summary->at("result").as_string(), "invalid_argument");
  EXPECT_EQ(summary->at("refused").as_int64(), 2);
  const auto& invalid = summary->at("errors").at("invalid_argument").as_object();
  EXPECT_EQ(invalid.at("count").as_int64(), 2);
  EXPECT_EQ(invalid.at("first_index").as_int64(), 1);
  EXPECT_EQ(invalid.at("first_message").as_string(), results[1].at("error").at("message").as_string());

  // A ciphertext that reaches the token and fails to authenticate touched the key: its own
  // record. One that does not even parse is a refusal.
  auto sealed = d.post("/v1/keys/demo/wrap", {{"plaintext", b64("secret")}, {"context", {{"t", "1"}}}});
  ASSERT_EQ(sealed.first, 200);
  const auto blob = sealed.second.at("ciphertext").as_string();
  json::array unwraps{json::object{{"ciphertext", blob}, {"context", {{"t", "1"}}}},
                      json::object{{"ciphertext", blob}, {"context", {{"t", "2"}}}},
                      json::object{{"ciphertext", b64("not a custody blob")}}};
  r = d.service().call("POST", "/v1/keys/demo/unwrap", batch_of(unwraps), {{"X-Request-Id", "unwraps"}});
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  records = records_with_request_id(d, "unwraps");
  ASSERT_EQ(records.size(), 3u);
  EXPECT_EQ(records[0].at("result").as_string(), "ok");
  EXPECT_EQ(records[0].at("batch_index").as_int64(), 0);
  EXPECT_EQ(records[1].at("result").as_string(), "invalid_ciphertext");
  EXPECT_EQ(records[1].at("batch_index").as_int64(), 1);
  EXPECT_EQ(records[1].at("version").as_int64(), 1);
  EXPECT_EQ(records[2].at("refused").as_int64(), 1);
  EXPECT_EQ(records[2].at("errors").at("invalid_ciphertext").at("first_index").as_int64(), 2);
}

TEST(AuditE2E, ASingleRefusedRequestStillHasItsOwnRecord) {
  Daemon d;
  auto r = d.service().call("POST", "/v1/keys/nope/wrap", json::serialize(json::object{{"plaintext", b64("x")}}),
                            {{"X-Request-Id", "single"}});
  ASSERT_TRUE(r);
  auto records = records_with_request_id(d, "single");
  ASSERT_EQ(records.size(), 1u);
  EXPECT_FALSE(records[0].contains("refused"));
  EXPECT_EQ(records[0].at("key").as_string(), "nope");
  EXPECT_NE(records[0].at("result").as_string(), "ok");
}

TEST(AuditE2E, HealthIsDegradedWhileTheAuditDiskIsShortOfSpace) {
  DaemonOptions o;
  o.extra_audit = "  min_free_bytes: 1125899906842624\n";  // 1 PiB: no test machine has it free
  Daemon d(o);
  auto health = d.admin().call("GET", "/v1/health");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);  // degraded still serves
  auto v = json::parse(health->body);
  EXPECT_EQ(v.at("status").as_string(), "degraded");
  EXPECT_EQ(v.at("audit").at("low_on_space").as_bool(), true);
  EXPECT_NE(std::string(v.at("audit").at("reason").as_string()).find("min_free_bytes"), std::string::npos);
  EXPECT_GT(v.at("audit").at("free_bytes").as_int64(), 0);
  EXPECT_EQ(metric(d, "custody_audit_disk_low"), 1u);
  EXPECT_GT(metric(d, "custody_audit_disk_free_bytes"), 0u);
  EXPECT_EQ(metric(d, "custody_audit_files"), 1u);
  EXPECT_EQ(metric(d, "custody_audit_bytes"), std::filesystem::file_size(d.audit_path()));

  o.extra_audit = "  min_free_bytes: 1\n";
  Daemon roomy(o);
  v = json::parse(roomy.service().call("GET", "/v1/health")->body);
  EXPECT_EQ(v.at("status").as_string(), "ok");
  EXPECT_FALSE(v.at("audit").as_object().contains("low_on_space"));
  EXPECT_EQ(metric(roomy, "custody_audit_disk_low"), 0u);
}

TEST(AuditE2E, AQuietDaemonSignsACheckpointWithinTheInterval) {
  DaemonOptions o;
  o.extra_audit = "  checkpoint_interval: 300ms\n";
  Daemon d(o);
  ASSERT_EQ(d.create_key("demo", "aes-256-gcm", allow_me_everything()), 201);
  ASSERT_EQ(d.post("/v1/keys/demo/wrap", {{"plaintext", b64("x")}}).first, 200);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  bool covered = false;
  while (!covered && std::chrono::steady_clock::now() < deadline) {
    auto records = d.audit_records();
    covered = records.back().at("type").as_string() == "checkpoint";
    if (!covered) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_TRUE(covered) << "no checkpoint after the last record";
}

TEST(AuditE2E, RetentionKeepsTheBudgetAndCustodyctlVerifiesWhatRemains) {
  DaemonOptions o;
  o.extra_audit = "  max_file_bytes: 4096\n  max_files: 3\n  checkpoint_every: 10\n";
  Daemon d(o);
  ASSERT_EQ(d.create_key("demo", "aes-256-gcm", allow_me_everything()), 201);
  for (int i = 0; i < 150; ++i) ASSERT_EQ(d.post("/v1/keys/demo/wrap", {{"plaintext", b64("n" + std::to_string(i))}}).first, 200);
  auto attestation = d.service().call("POST", "/v1/attestation", json::serialize(json::object{{"nonce", b64("n")}}));
  ASSERT_TRUE(attestation && attestation->status == 200);
  write_file(d.dir() + "/attestation.pem", std::string(json::parse(attestation->body).at("public_key").as_string()));
  ASSERT_EQ(d.terminate(), 0);

  std::vector<std::string> files;
  for (const auto& entry : std::filesystem::directory_iterator(d.dir()))
    if (entry.path().filename().string().rfind("audit.jsonl.", 0) == 0) files.push_back(entry.path().string());
  std::sort(files.begin(), files.end());
  // 150 requests fill about 15 files; beyond the budget of 3 only what the last retention
  // records and their checkpoint rotated out, until the next checkpoint covers it.
  EXPECT_LE(files.size() + 1, 3u + 2u);
  const auto oldest = read_file(files.empty() ? d.audit_path() : files.front());
  EXPECT_GT(json::parse(oldest.substr(0, oldest.find('\n'))).at("seq").as_int64(), 1);
  std::string list;
  for (const auto& f : files) list += f + " ";
  const std::string out = d.dir() + "/verify.out";
  EXPECT_EQ(run(std::string(CUSTODYCTL_PATH) + " audit verify " + list + d.audit_path() + " --public-key " + d.dir() +
                "/attestation.pem > " + out),
            0)
      << read_file(out);
  EXPECT_NE(read_file(out).find("the log starts at seq"), std::string::npos) << read_file(out);
  // The removals are on the record: the newest retention record names a file that is gone.
  bool named = false;
  for (const auto& f : files) {
    std::istringstream in(read_file(f));
    for (std::string line; std::getline(in, line);) {
      auto rec = json::parse(line).as_object();
      if (rec.at("type") == "audit.retention")
        named = !std::filesystem::exists(std::string(rec.at("file").as_string()));
    }
  }
  std::istringstream live(read_file(d.audit_path()));
  for (std::string line; std::getline(live, line);) {
    auto rec = json::parse(line).as_object();
    if (rec.at("type") == "audit.retention") named = !std::filesystem::exists(std::string(rec.at("file").as_string()));
  }
  EXPECT_TRUE(named);
}
