#include <gtest/gtest.h>

#include <openssl/ec.h>
#include <openssl/evp.h>

#include <algorithm>
#include <boost/json.hpp>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <future>
#include <memory>
#include <mutex>
#include <sstream>
#include <thread>

#include "common/hex.h"
#include "common/pem.h"
#include "daemon/core/audit/audit_log.h"
#include "daemon/core/audit/audit_verify.h"
#include "tests/support/softhsm_token.h"

using namespace custody;
using namespace custody::core;
using namespace std::chrono_literals;

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
  EXPECT_EQ(second.at("prev").as_string(), sha256_hex(to_bytes(lines[0])).value());
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

// The I/O thread is woken once per fdatasync, not once per request: every submit() that went out
// in one written group is handed over in one call of the delivery hook.
TEST(AuditLog, EachWrittenGroupIsHandedOverInOneCall) {
  test::TempDir dir;
  SystemClock clock;
  auto log = AuditLog::open(dir.path() + "/audit.jsonl", AuditDurability::group, clock);
  ASSERT_TRUE(log);
  std::mutex m;
  std::condition_variable cv;
  bool release = false;
  std::vector<std::size_t> handed_over;  // completions per hook call
  int done = 0;
  (*log)->set_delivery([&](AuditLog::Completions completions, bool written) {
    std::unique_lock lock(m);
    handed_over.push_back(completions.size());
    cv.notify_all();
    // The first group holds the writer here, so the next submits queue up behind it.
    if (handed_over.size() == 1) cv.wait(lock, [&] { return release; });
    lock.unlock();
    for (const auto& d : completions) d(written);
  });
  auto count = [&](bool ok) {
    EXPECT_TRUE(ok);
    std::lock_guard lock(m);
    ++done;
    cv.notify_all();
  };
  (*log)->submit({event("first")}, count);
  {
    std::unique_lock lock(m);
    ASSERT_TRUE(cv.wait_for(lock, 10s, [&] { return handed_over.size() == 1; }));
  }
  for (int i = 0; i < 10; ++i) (*log)->submit({event("queued")}, count);
  {
    std::lock_guard lock(m);
    release = true;
  }
  cv.notify_all();
  std::unique_lock lock(m);
  ASSERT_TRUE(cv.wait_for(lock, 10s, [&] { return done == 11; }));
  EXPECT_EQ(handed_over, (std::vector<std::size_t>{1, 10}));
  EXPECT_EQ((*log)->sequence(), 11u);
}

// write_now(): the caller writes when the writer is idle (one request alone skips two thread
// hand-overs), and declines while the writer holds the log, so records never interleave.
TEST(AuditLog, WriteNowWritesOnTheCallersThreadOnlyWhenTheWriterIsIdle) {
  test::TempDir dir;
  const std::string path = dir.path() + "/audit.jsonl";
  SystemClock clock;
  auto log = AuditLog::open(path, AuditDurability::group, clock);
  ASSERT_TRUE(log);
  std::vector<AuditEvent> alone{event("alone")};
  EXPECT_EQ((*log)->write_now(alone), std::optional<bool>(true));
  EXPECT_EQ((*log)->sequence(), 1u);

  std::mutex m;
  std::condition_variable cv;
  bool in_hook = false, release = false;
  (*log)->set_delivery([&](AuditLog::Completions completions, bool written) {
    std::unique_lock lock(m);
    in_hook = true;
    cv.notify_all();
    cv.wait(lock, [&] { return release; });  // the writer thread holds the log until released
    lock.unlock();
    for (const auto& d : completions) d(written);
  });
  std::promise<bool> queued_done;
  (*log)->submit({event("queued")}, [&](bool ok) { queued_done.set_value(ok); });
  {
    std::unique_lock lock(m);
    ASSERT_TRUE(cv.wait_for(lock, 10s, [&] { return in_hook; }));
  }
  std::vector<AuditEvent> busy{event("while-busy")};
  EXPECT_EQ((*log)->write_now(busy), std::nullopt);
  EXPECT_EQ(busy.size(), 1u) << "declined records stay with the caller, to be submitted";
  {
    std::lock_guard lock(m);
    release = true;
  }
  cv.notify_all();
  EXPECT_TRUE(queued_done.get_future().get());
  std::optional<bool> later;
  for (int i = 0; i < 1000 && !(later = (*log)->write_now(busy)); ++i) std::this_thread::sleep_for(1ms);
  EXPECT_EQ(later, std::optional<bool>(true));
  (*log)->stop();
  auto v = verify_text(test::read_file(path));
  EXPECT_TRUE(v.ok) << v.problem;
  EXPECT_EQ(v.records, 3u);
  const auto lines = lines_of(path);
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_NE(lines[2].find("while-busy"), std::string::npos);
}

// write() waits on its own thread for the outcome: it must not depend on the hook's thread (the
// I/O thread may be the caller, or already stopped at shutdown).
TEST(AuditLog, WriteCompletesWithoutTheDeliveryHook) {
  test::TempDir dir;
  SystemClock clock;
  auto log = AuditLog::open(dir.path() + "/audit.jsonl", AuditDurability::group, clock);
  ASSERT_TRUE(log);
  std::atomic<int> hook_calls{0};
  (*log)->set_delivery([&](AuditLog::Completions, bool) { ++hook_calls; });  // never completes anything
  EXPECT_TRUE((*log)->write({event("lifecycle")}));
  EXPECT_EQ(hook_calls.load(), 0);
  EXPECT_EQ((*log)->sequence(), 1u);
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

namespace {

// An EC P-256 key signing checkpoints as the attestation key does, and its public key in PEM.
struct CheckpointKey {
  std::shared_ptr<EVP_PKEY> key{EVP_EC_gen("P-256"), EVP_PKEY_free};
  std::string public_pem() const { return public_key_pem(key.get()).value(); }
  AuditLog::Signer signer() const {
    return [k = key](std::string_view message) -> Expected<Bytes, std::string> {
      std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
      std::size_t len = 0;
      if (!ctx || EVP_DigestSignInit(ctx.get(), nullptr, EVP_sha256(), nullptr, k.get()) != 1 ||
          EVP_DigestSign(ctx.get(), nullptr, &len, reinterpret_cast<const unsigned char*>(message.data()),
                         message.size()) != 1)
        return unexpected(std::string("cannot sign"));
      Bytes sig(len);
      if (EVP_DigestSign(ctx.get(), sig.data(), &len, reinterpret_cast<const unsigned char*>(message.data()),
                         message.size()) != 1)
        return unexpected(std::string("cannot sign"));
      sig.resize(len);
      return sig;
    };
  }
};

// The rotated files next to path, oldest first, then the live file: the order verify wants.
std::vector<std::string> log_files(const std::string& path) {
  std::vector<std::string> files;
  const std::string prefix = std::filesystem::path(path).filename().string() + ".";
  for (const auto& entry : std::filesystem::directory_iterator(std::filesystem::path(path).parent_path())) {
    const auto name = entry.path().filename().string();
    if (name.rfind(prefix, 0) == 0) files.push_back(entry.path().string());
  }
  std::sort(files.begin(), files.end());
  files.push_back(path);
  return files;
}

AuditVerification verify_files(const std::vector<std::string>& files, const std::string& pem) {
  std::vector<std::unique_ptr<std::ifstream>> streams;
  std::vector<std::istream*> inputs;
  for (const auto& f : files) {
    streams.push_back(std::make_unique<std::ifstream>(f, std::ios::binary));
    inputs.push_back(streams.back().get());
  }
  return verify_audit_log(inputs, pem);
}

std::vector<boost::json::object> records_of(const std::vector<std::string>& files) {
  std::vector<boost::json::object> out;
  for (const auto& f : files)
    for (const auto& l : lines_of(f)) out.push_back(boost::json::parse(l).as_object());
  return out;
}

// Waits (bounded) until the log has written and synced a checkpoint at seq; false on timeout.
bool checkpoint_reaches(const AuditLog& log, std::uint64_t seq, std::chrono::milliseconds within) {
  const auto deadline = std::chrono::steady_clock::now() + within;
  while (std::chrono::steady_clock::now() < deadline) {
    if (log.last_checkpoint_sequence() >= seq) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

}  // namespace

TEST(AuditCheckpoints, AQuietLogIsCheckpointedWithinTheInterval) {
  test::TempDir dir;
  const std::string path = dir.path() + "/audit.jsonl";
  SystemClock clock;
  CheckpointKey key;
  auto log = AuditLog::open(path, AuditDurability::group, clock);
  ASSERT_TRUE(log);
  (*log)->set_checkpoints(key.signer(), 1000, Peer{0, 0, 1});
  (*log)->set_checkpoint_interval(std::chrono::milliseconds(300));
  ASSERT_TRUE((*log)->write({event("wrap")}));
  // No further record comes: the writer signs one by itself.
  ASSERT_TRUE(checkpoint_reaches(**log, 2, std::chrono::seconds(5)));
  auto v = verify_files({path}, key.public_pem());
  ASSERT_TRUE(v.ok) << v.problem;
  EXPECT_EQ(v.records, 2u);
  EXPECT_EQ(v.checkpoints, 1u);
  EXPECT_EQ(v.after_last_checkpoint, 0u);

  // Nothing new: no further checkpoint, however long the log stays quiet (three intervals here).
  std::this_thread::sleep_for(std::chrono::milliseconds(900));
  EXPECT_EQ(lines_of(path).size(), 2u);

  // A new record is covered again within the interval.
  ASSERT_TRUE((*log)->write({event("unwrap")}));
  ASSERT_TRUE(checkpoint_reaches(**log, 4, std::chrono::seconds(5)));
  EXPECT_EQ(lines_of(path).size(), 4u);
}

TEST(AuditCheckpoints, AnEmptyLogGetsNoCheckpoint) {
  test::TempDir dir;
  const std::string path = dir.path() + "/audit.jsonl";
  SystemClock clock;
  CheckpointKey key;
  auto log = AuditLog::open(path, AuditDurability::group, clock);
  ASSERT_TRUE(log);
  (*log)->set_checkpoints(key.signer(), 1000, Peer{0, 0, 1});
  (*log)->set_checkpoint_interval(std::chrono::milliseconds(100));
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  EXPECT_TRUE(lines_of(path).empty());
}

TEST(AuditRetention, RotatedFilesGoOnlyOnceANewerCheckpointCoversThem) {
  test::TempDir dir;
  const std::string path = dir.path() + "/audit.jsonl";
  SystemClock clock;
  CheckpointKey key;
  auto log = AuditLog::open(path, AuditDurability::group, clock);
  ASSERT_TRUE(log);
  (*log)->set_checkpoints(key.signer(), 1000, Peer{0, 0, 1});
  (*log)->set_rotation(700);  // two or three records a file
  (*log)->set_retention({3, 0, 0});
  for (int i = 0; i < 20; ++i) ASSERT_TRUE((*log)->write({event("wrap" + std::to_string(i), "demo")}));
  // Far over the budget, but no checkpoint vouches for what would remain: everything stays.
  const auto before = log_files(path);
  ASSERT_GT(before.size(), 5u);
  EXPECT_EQ((*log)->storage().files, before.size());
  EXPECT_EQ(verify_files(before, key.public_pem()).first_seq, 1u);

  ASSERT_TRUE((*log)->checkpoint());
  const std::uint64_t covered = (*log)->last_checkpoint_sequence();
  ASSERT_EQ(covered, 21u);
  // The retention record is written before the files go, by the writer after the checkpoint.
  (*log)->stop();
  const auto after = log_files(path);
  // The retention records and the checkpoint after them may each have rotated the live file.
  EXPECT_LE(after.size(), 3u + 2u);
  EXPECT_TRUE(std::filesystem::exists(path));
  std::uint64_t removed = 0;
  std::uint64_t removed_last = 0;
  for (const auto& rec : records_of(after)) {
    if (rec.at("type") != "audit.retention") continue;
    ++removed;
    const auto& file = rec.at("file").as_string();
    EXPECT_FALSE(std::filesystem::exists(std::string(file))) << file;
    EXPECT_LT(rec.at("last_seq").as_int64(), static_cast<std::int64_t>(covered));
    EXPECT_LE(rec.at("first_seq").as_int64(), rec.at("last_seq").as_int64());
    removed_last = std::max(removed_last, static_cast<std::uint64_t>(rec.at("last_seq").as_int64()));
  }
  EXPECT_GE(removed, before.size() - 3);
  // What remains is one chain from the record after the last removed one, with its checkpoint.
  auto v = verify_files(after, key.public_pem());
  ASSERT_TRUE(v.ok) << v.problem << " at line " << v.first_bad_line;
  EXPECT_TRUE(v.started_mid_chain);
  EXPECT_EQ(v.first_seq, removed_last + 1);
  EXPECT_GE(v.checkpoints, 1u);
}

TEST(AuditRetention, NeverRemovesTheLiveFileOrAnUncoveredOne) {
  test::TempDir dir;
  const std::string path = dir.path() + "/audit.jsonl";
  SystemClock clock;
  CheckpointKey key;
  // Every file kept has a record no checkpoint after it covers (or is the live file).
  auto expect_kept_files_uncovered = [&](const std::vector<std::string>& files, std::int64_t checkpoint_seq) {
    for (const auto& f : files) {
      if (f == path) continue;
      const auto last = boost::json::parse(lines_of(f).back()).at("seq").as_int64();
      EXPECT_GE(last, checkpoint_seq) << f;
    }
  };
  {
    auto log = AuditLog::open(path, AuditDurability::always, clock);
    ASSERT_TRUE(log);
    (*log)->set_checkpoints(key.signer(), 1000, Peer{0, 0, 1});
    (*log)->set_rotation(700);
    for (int i = 0; i < 12; ++i) ASSERT_TRUE((*log)->write({event("wrap" + std::to_string(i), "demo")}));
    ASSERT_TRUE((*log)->checkpoint());
    ASSERT_EQ((*log)->last_checkpoint_sequence(), 13u);
    for (int i = 0; i < 12; ++i) ASSERT_TRUE((*log)->write({event("late" + std::to_string(i), "demo")}));
    const auto before = log_files(path);
    // A byte budget nothing fits in: only the files before the checkpoint may go.
    (*log)->set_retention({0, 1, 0});
    ASSERT_TRUE((*log)->write({event("one-more")}));
    (*log)->stop();
    const auto after = log_files(path);
    ASSERT_TRUE(std::filesystem::exists(path));
    EXPECT_LT(after.size(), before.size());
    expect_kept_files_uncovered(after, 13);
    auto v = verify_files(after, key.public_pem());
    EXPECT_TRUE(v.ok) << v.problem;
  }
  // Reopened, the log finds its rotated files again; its next checkpoint lets them go.
  auto log = AuditLog::open(path, AuditDurability::always, clock);
  ASSERT_TRUE(log);
  EXPECT_EQ((*log)->storage().files, log_files(path).size());
  (*log)->set_checkpoints(key.signer(), 1000, Peer{0, 0, 1});
  (*log)->set_rotation(700);
  (*log)->set_retention({0, 1, 0});
  ASSERT_TRUE((*log)->checkpoint());
  const auto checkpoint_seq = static_cast<std::int64_t>((*log)->last_checkpoint_sequence());
  (*log)->stop();
  const auto after = log_files(path);
  ASSERT_TRUE(std::filesystem::exists(path));
  expect_kept_files_uncovered(after, checkpoint_seq);
  auto v = verify_files(after, key.public_pem());
  EXPECT_TRUE(v.ok) << v.problem;
  EXPECT_TRUE(v.started_mid_chain);
}

TEST(AuditStorage, TheFreeSpaceAlarmFollowsTheFilesystem) {
  test::TempDir dir;
  SystemClock clock;
  auto log = AuditLog::open(dir.path() + "/audit.jsonl", AuditDurability::group, clock);
  ASSERT_TRUE(log);
  ASSERT_TRUE((*log)->write({event("a")}));
  (*log)->set_retention({0, 0, 1000});
  std::uint64_t free_bytes = 5000;
  std::string asked;
  (*log)->set_free_space_probe([&](const std::string& d) -> Expected<std::uint64_t, std::string> {
    asked = d;
    if (free_bytes == 0) return unexpected(std::string("statvfs failed"));
    return free_bytes;
  });
  auto s = (*log)->storage();
  EXPECT_EQ(asked, dir.path());
  EXPECT_EQ(s.files, 1u);
  EXPECT_EQ(s.bytes, std::filesystem::file_size(dir.path() + "/audit.jsonl"));
  EXPECT_EQ(s.free_bytes, 5000u);
  EXPECT_FALSE(s.low_on_space());
  free_bytes = 999;
  EXPECT_TRUE((*log)->storage().low_on_space());
  free_bytes = 0;  // cannot be read: alarm rather than silence
  EXPECT_TRUE((*log)->storage().low_on_space());
  (*log)->set_retention({0, 0, 0});  // no alarm configured
  EXPECT_FALSE((*log)->storage().low_on_space());
}

TEST(AuditStorage, TheDefaultProbeReadsTheRealFilesystem) {
  test::TempDir dir;
  SystemClock clock;
  auto log = AuditLog::open(dir.path() + "/audit.jsonl", AuditDurability::group, clock);
  ASSERT_TRUE(log);
  (*log)->set_retention({0, 0, 1});
  auto s = (*log)->storage();
  ASSERT_TRUE(s.free_bytes);
  // Other processes write meanwhile: the same filesystem, within a margin.
  const auto available = std::filesystem::space(dir.path()).available;
  EXPECT_LT(std::max(*s.free_bytes, available) - std::min(*s.free_bytes, available), 256ULL << 20);
  (*log)->set_retention({0, 0, 1ULL << 62});
  EXPECT_TRUE((*log)->storage().low_on_space());
}

// Found by the kill -9 suite: a crash between a rotation's rename and the new file's first record
// left an empty live file, and the next start began a second chain at seq 1.
TEST(AuditRotation, AnEmptyLiveFileAfterARotationContinuesTheChain) {
  test::TempDir dir;
  const std::string path = dir.path() + "/audit.jsonl";
  SystemClock clock;
  {
    auto log = AuditLog::open(path, AuditDurability::always, clock);
    ASSERT_TRUE(log);
    (*log)->set_rotation(700);
    for (int i = 0; i < 8; ++i) ASSERT_TRUE((*log)->write({event("wrap" + std::to_string(i), "demo")}));
    (*log)->stop();
  }
  // The crash: the live file was renamed away and its successor is empty (or not there at all).
  const auto rotated = log_files(path);
  ASSERT_GT(rotated.size(), 2u);
  const std::uint64_t last_seq = records_of(rotated).back().at("seq").as_int64();
  std::filesystem::rename(path, path + ".000000009999");  // what rotate() had just done
  for (bool create_empty : {true, false}) {
    if (create_empty) test::write_file(path, "");
    auto log = AuditLog::open(path, AuditDurability::always, clock);
    ASSERT_TRUE(log);
    EXPECT_EQ((*log)->sequence(), last_seq);
    if (!create_empty) {
      ASSERT_TRUE((*log)->write({event("after-crash")}));
    }
    (*log)->stop();
  }
  const auto files = log_files(path);
  auto v = verify_files(files, "");
  EXPECT_TRUE(v.ok) << v.problem << " at line " << v.first_bad_line;
  EXPECT_EQ(records_of(files).back().at("seq").as_int64(), static_cast<std::int64_t>(last_seq + 1));
}

TEST(AuditRotation, ARotationNeverReplacesAnExistingFile) {
  test::TempDir dir;
  const std::string path = dir.path() + "/audit.jsonl";
  SystemClock clock;
  auto log = AuditLog::open(path, AuditDurability::always, clock);
  ASSERT_TRUE(log);
  ASSERT_TRUE((*log)->write({event("first")}));
  // A file already holds the name the next rotation would take.
  test::write_file(path + ".000000000001", "acknowledged records\n");
  (*log)->set_rotation(1);
  (*log)->write({event("second")});
  (*log)->stop();
  EXPECT_EQ(test::read_file(path + ".000000000001"), "acknowledged records\n");
}

// Issue #15 (audit open and rotation): these need the file size limit and resource usage.
#include <sys/resource.h>
#include <unistd.h>

#include <csignal>

namespace {

AuditEvent padded_event(const std::string& type, std::size_t pad) {
  AuditEvent e = event(type);
  e.extra["pad"] = std::string(pad, 'x');
  return e;
}

// RLIMIT_FSIZE of this process set for a scope, with SIGXFSZ ignored as custodyd ignores it: a
// write past the limit then fails with EFBIG, as on a full disk.
class FileSizeLimit {
 public:
  explicit FileSizeLimit(rlim_t bytes) {
    previous_handler_ = std::signal(SIGXFSZ, SIG_IGN);
    ok_ = ::getrlimit(RLIMIT_FSIZE, &previous_) == 0;
    rlimit limited = previous_;
    limited.rlim_cur = bytes;
    ok_ = ok_ && ::setrlimit(RLIMIT_FSIZE, &limited) == 0;
  }
  ~FileSizeLimit() {
    ::setrlimit(RLIMIT_FSIZE, &previous_);
    std::signal(SIGXFSZ, previous_handler_);
  }
  bool ok() const { return ok_; }

 private:
  rlimit previous_{};
  void (*previous_handler_)(int) = nullptr;
  bool ok_ = false;
};

}  // namespace

// Item 10: with `always`, one group rotates twice and then a write fails. The records written
// before the failure stay where they are (each was synced on its own) and keep their seq; the
// next record continues after them, in whichever file, and never reuses a number.
TEST(AuditRotation, AFailedWriteAfterARotationInsideAGroupNeverReusesASequenceNumber) {
  test::TempDir dir;
  const std::string path = dir.path() + "/audit.jsonl";
  SystemClock clock;
  {
    auto log = AuditLog::open(path, AuditDurability::always, clock);
    ASSERT_TRUE(log);
    (*log)->set_rotation(1000);
    {
      // first (~3.2 KB) fits; second rotates and fits; third rotates again and passes the limit.
      FileSizeLimit limit(4000);
      ASSERT_TRUE(limit.ok());
      EXPECT_FALSE((*log)->write({padded_event("first", 3000), event("second"), padded_event("third", 3900)}));
    }
    EXPECT_EQ((*log)->sequence(), 2u) << "the records synced before the failure are part of the chain";
    ASSERT_TRUE((*log)->write({event("after-failure")}));
    EXPECT_EQ((*log)->sequence(), 3u);
    (*log)->stop();
  }
  // The chain survives a restart too.
  {
    auto log = AuditLog::open(path, AuditDurability::always, clock);
    ASSERT_TRUE(log);
    EXPECT_EQ((*log)->sequence(), 3u);
    ASSERT_TRUE((*log)->write({event("after-restart")}));
    (*log)->stop();
  }
  const auto files = log_files(path);
  EXPECT_GE(files.size(), 3u) << "the group should have rotated the log twice";
  auto v = verify_files(files, "");
  EXPECT_TRUE(v.ok) << v.problem << " at line " << v.first_bad_line;
  std::vector<std::string> types;
  std::int64_t expected_seq = 1;
  for (const auto& rec : records_of(files)) {
    EXPECT_EQ(rec.at("seq").as_int64(), expected_seq++) << "a sequence number was skipped or used twice";
    types.push_back(std::string(rec.at("type").as_string()));
  }
  EXPECT_EQ(types, (std::vector<std::string>{"first", "second", "after-failure", "after-restart"}));
}

// Item 12: open() finds the last record from the file's end; a file of hundreds of MB ending in
// a torn record is not read into memory whole (the peak RSS would grow by its size).
TEST(AuditLog, OpensALargeLogWithoutReadingItWhole) {
  test::TempDir dir;
  const std::string path = dir.path() + "/audit.jsonl";
  SystemClock clock;
  {
    auto log = AuditLog::open(path, AuditDurability::always, clock);
    ASSERT_TRUE(log);
    ASSERT_TRUE((*log)->write({event("only")}));
    (*log)->stop();
  }
  const auto record_bytes = std::filesystem::file_size(path);
  // A torn tail of 512 MiB (sparse: no disk space is used) after the one whole record.
  constexpr std::uint64_t kTail = 512ULL << 20;
  std::filesystem::resize_file(path, record_bytes + kTail);
  rusage before{};
  ASSERT_EQ(::getrusage(RUSAGE_SELF, &before), 0);
  {
    auto log = AuditLog::open(path, AuditDurability::always, clock);
    ASSERT_TRUE(log) << log.error();
    EXPECT_EQ((*log)->sequence(), 1u);
    ASSERT_TRUE((*log)->write({event("next")}));
    (*log)->stop();
  }
  rusage after{};
  ASSERT_EQ(::getrusage(RUSAGE_SELF, &after), 0);
  const long grown_kib = after.ru_maxrss - before.ru_maxrss;  // ru_maxrss is in KiB on Linux
  EXPECT_LT(grown_kib, 64 * 1024) << "opening the log raised the peak RSS by " << grown_kib << " KiB";
  auto v = verify_files({path}, "");
  EXPECT_TRUE(v.ok) << v.problem;
  EXPECT_EQ(records_of({path}).size(), 2u);
}
