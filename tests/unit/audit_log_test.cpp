#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <fstream>
#include <sstream>

#include "common/hex.h"
#include "daemon/core/audit_log.h"
#include "daemon/core/audit_verify.h"
#include "tests/support/softhsm_token.h"

using namespace custody;
using namespace custody::core;

namespace {

AuditEvent event(const std::string& type, const std::string& key = "") {
  AuditEvent e;
  e.type = type;
  e.request_id = "req-" + type;
  e.client = Peer{1000, 1000, 42};
  if (!key.empty()) e.key = key;
  return e;
}

std::vector<std::string> lines_of(const std::string& path) {
  std::istringstream in(test::read_file(path));
  std::vector<std::string> lines;
  for (std::string l; std::getline(in, l);) lines.push_back(l);
  return lines;
}

AuditVerification verify_text(const std::string& text) {
  std::istringstream in(text);
  return verify_audit_log(in);
}

}  // namespace

TEST(AuditLog, RecordsCarryTheContractFieldsAndChainByHash) {
  test::TempDir dir;
  const std::string path = dir.path() + "/audit.jsonl";
  SystemClock clock;
  {
    auto log = AuditLog::open(path, AuditDurability::group, clock);
    ASSERT_TRUE(log);
    auto e = event("wrap", "demo");
    e.version = 3;
    e.context_sha256 = std::string(64, 'a');
    ASSERT_TRUE((*log)->write({e, event("unwrap")}));
    EXPECT_EQ((*log)->sequence(), 2u);
  }
  auto lines = lines_of(path);
  ASSERT_EQ(lines.size(), 2u);
  auto first = boost::json::parse(lines[0]).as_object();
  EXPECT_EQ(first.at("seq").as_int64(), 1);
  EXPECT_EQ(first.at("prev").as_string(), std::string(64, '0'));
  EXPECT_EQ(first.at("type").as_string(), "wrap");
  EXPECT_EQ(first.at("request_id").as_string(), "req-wrap");
  EXPECT_EQ(first.at("client").at("pid").as_int64(), 42);
  EXPECT_EQ(first.at("result").as_string(), "ok");
  EXPECT_EQ(first.at("key").as_string(), "demo");
  EXPECT_EQ(first.at("version").as_int64(), 3);
  EXPECT_EQ(first.at("time").as_string().size(), std::string("2026-11-23T23:32:31.123456Z").size());
  auto second = boost::json::parse(lines[1]).as_object();
  EXPECT_EQ(second.at("prev").as_string(), sha256_hex(to_bytes(lines[0])));
}

TEST(AuditLog, ContinuesTheChainAfterReopening) {
  test::TempDir dir;
  const std::string path = dir.path() + "/audit.jsonl";
  SystemClock clock;
  for (int run = 0; run < 3; ++run) {
    auto log = AuditLog::open(path, AuditDurability::always, clock);
    ASSERT_TRUE(log);
    ASSERT_TRUE((*log)->write({event("a"), event("b")}));
  }
  auto v = verify_text(test::read_file(path));
  EXPECT_TRUE(v.ok) << v.problem;
  EXPECT_EQ(v.records, 6u);
}

TEST(AuditLog, DropsATornLastRecordAtOpen) {
  test::TempDir dir;
  const std::string path = dir.path() + "/audit.jsonl";
  SystemClock clock;
  {
    auto log = AuditLog::open(path, AuditDurability::group, clock);
    ASSERT_TRUE((*log)->write({event("a")}));
  }
  { std::ofstream(path, std::ios::app) << "{\"seq\":2,\"ti"; }  // a crash mid-write
  auto log = AuditLog::open(path, AuditDurability::group, clock);
  ASSERT_TRUE(log);
  ASSERT_TRUE((*log)->write({event("b")}));
  auto v = verify_text(test::read_file(path));
  EXPECT_TRUE(v.ok) << v.problem;
  EXPECT_EQ(v.records, 2u);
}

TEST(AuditLog, OnlyOneWriterPerFile) {
  test::TempDir dir;
  SystemClock clock;
  auto first = AuditLog::open(dir.path() + "/audit.jsonl", AuditDurability::group, clock);
  ASSERT_TRUE(first);
  auto second = AuditLog::open(dir.path() + "/audit.jsonl", AuditDurability::group, clock);
  EXPECT_FALSE(second);
}

TEST(AuditVerify, FindsEveryKindOfTamperingAndNamesTheRecord) {
  test::TempDir dir;
  const std::string path = dir.path() + "/audit.jsonl";
  SystemClock clock;
  {
    auto log = AuditLog::open(path, AuditDurability::none, clock);
    std::vector<AuditEvent> events;
    for (int i = 0; i < 10; ++i) events.push_back(event("e" + std::to_string(i)));
    ASSERT_TRUE((*log)->write(events));
  }
  const auto lines = lines_of(path);
  auto join = [](const std::vector<std::string>& ls) {
    std::string s;
    for (const auto& l : ls) s += l + "\n";
    return s;
  };
  ASSERT_TRUE(verify_text(join(lines)).ok);

  // A flipped byte anywhere in record k is caught at k (seq/prev fields) or at k+1 (its hash).
  // The newest record has no successor yet: signed checkpoints cover it.
  for (std::size_t k = 0; k + 1 < lines.size(); ++k) {
    for (std::size_t pos = 0; pos < lines[k].size(); pos += 7) {
      auto copy = lines;
      copy[k][pos] ^= 0x01;
      auto v = verify_text(join(copy));
      ASSERT_FALSE(v.ok) << "record " << k << " byte " << pos;
      EXPECT_TRUE(v.first_bad_line == k + 1 || v.first_bad_line == k + 2) << v.first_bad_line;
    }
  }
  auto removed = lines;
  removed.erase(removed.begin() + 4);
  EXPECT_EQ(verify_text(join(removed)).first_bad_line, 5u);
  auto swapped = lines;
  std::swap(swapped[2], swapped[3]);
  EXPECT_EQ(verify_text(join(swapped)).first_bad_line, 3u);
  auto truncated = join(lines);
  truncated.pop_back();
  EXPECT_EQ(verify_text(truncated).first_bad_line, 10u);
}
