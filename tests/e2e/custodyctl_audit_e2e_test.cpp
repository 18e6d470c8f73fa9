// custodyctl's audit tools against a live daemon: `audit tail -f` across rotations, `report usage`
// from the rotated files, and `audit verify` against the daemon's attested sequence.
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <set>
#include <sstream>
#include <thread>

#include "common/base64.h"
#include "daemon/core/audit/audit_log.h"
#include "tests/support/daemon_process.h"

using namespace custody;
using namespace custody::test;
namespace json = boost::json;
namespace fs = std::filesystem;

extern char** environ;

namespace {


std::string ctl_command(Daemon& d, const std::string& args) {
  return "CUSTODY_SERVICE_SOCKET='" + d.service_socket() + "' CUSTODY_ADMIN_SOCKET='" + d.admin_socket() + "' " +
         CUSTODYCTL_PATH + " " + args;
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

std::vector<std::string> rotated_files(Daemon& d) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(d.dir()))
    if (e.path().filename().string().rfind("audit.jsonl.", 0) == 0) out.push_back(e.path().string());
  std::sort(out.begin(), out.end());
  return out;
}

std::uint64_t daemon_sequence(Daemon& d) {
  auto r = d.service().call("GET", "/v1/health");
  if (!r) return 0;
  return json::parse(r->body).at("audit").at("sequence").to_number<std::uint64_t>();
}

// custodyctl running in the background, its output in files, stopped when the test is done.
class Background {
 public:
  Background(const std::string& command, const std::string& out, const std::string& err) {
    const std::string shell = "exec env " + command + " >'" + out + "' 2>'" + err + "'";
    const char* argv[] = {"/bin/sh", "-c", shell.c_str(), nullptr};
    if (::posix_spawn(&pid_, "/bin/sh", nullptr, nullptr, const_cast<char**>(argv), environ) != 0) pid_ = -1;
  }
  ~Background() {
    if (pid_ > 0 && !exited_) {
      ::kill(pid_, SIGTERM);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  bool started() const { return pid_ > 0; }
  // Its exit status once it ended by itself within the timeout; nullopt while it still runs.
  std::optional<int> wait_exit(std::chrono::seconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        exited_ = true;
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return std::nullopt;
  }

 private:
  pid_t pid_ = -1;
  bool exited_ = false;
};

// Waits until pred holds (re-checked every 20 ms) or the deadline passes.
bool eventually(const std::function<bool()>& pred, std::chrono::seconds timeout = std::chrono::seconds(20)) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return pred();
}

std::vector<std::uint64_t> seqs_in(const std::string& json_lines) {
  std::vector<std::uint64_t> seqs;
  for (const auto& line : lines_of(json_lines)) {
    boost::system::error_code ec;
    auto v = json::parse(line, ec);
    if (!ec && v.is_object() && v.as_object().contains("seq")) seqs.push_back(v.at("seq").to_number<std::uint64_t>());
  }
  return seqs;
}

// The next record after `last` with the right seq but a prev that is not the hash of `last`.
std::string forged_successor(const std::string& last) {
  auto v = json::parse(last).as_object();
  v["seq"] = v.at("seq").to_number<std::uint64_t>() + 1;
  v["prev"] = std::string(64, 'a');
  return json::serialize(v);
}

// One daemon whose log rotates every 4 KiB, shared by the tail and report tests.
class CustodyctlAuditE2E : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    DaemonOptions o;
    o.service_group = "nogroup";  // uid 65534 may connect, and is refused by policy
    o.extra_audit = "  max_file_bytes: 4096\n  checkpoint_every: 10\n";
    daemon_ = new Daemon(o);
  }
  static void TearDownTestSuite() {
    delete daemon_;
    daemon_ = nullptr;
  }
  Daemon& d() { return *daemon_; }
  int ctl(const std::string& args) { return run(ctl_command(d(), args)); }
  std::string path(const std::string& name) { return d().dir() + "/" + name; }
  void wrap(const std::string& key, int times) {
    for (int i = 0; i < times; ++i)
      ASSERT_EQ(d().post("/v1/keys/" + key + "/wrap", json::object{{"plaintext", b64("record " + std::to_string(i))}}).first, 200);
  }
  static Daemon* daemon_;
};
Daemon* CustodyctlAuditE2E::daemon_ = nullptr;

}  // namespace

TEST_F(CustodyctlAuditE2E, TailFollowsTheLogAcrossRotationsAndSeesEverySequenceNumber) {
  ASSERT_EQ(d().create_key("tailed", "aes-256-gcm", allow_me_everything()), 201);
  const std::size_t rotated_before = rotated_files(d()).size();
  Background tail(ctl_command(d(), "audit tail -f --json -n 100000 --log " + d().audit_path()), path("tail.out"),
                  path("tail.err"));
  ASSERT_TRUE(tail.started());
  // Every record there is when it starts, then every one written while the file rotates under it.
  ASSERT_TRUE(eventually([&] { return !seqs_in(read_file(path("tail.out"))).empty(); })) << read_file(path("tail.err"));
  while (rotated_files(d()).size() < rotated_before + 3) wrap("tailed", 5);
  const std::uint64_t last = daemon_sequence(d());
  ASSERT_TRUE(eventually([&] {
    auto seqs = seqs_in(read_file(path("tail.out")));
    return !seqs.empty() && seqs.back() >= last;
  })) << read_file(path("tail.err"));
  auto seqs = seqs_in(read_file(path("tail.out")));
  ASSERT_FALSE(seqs.empty());
  for (std::size_t i = 1; i < seqs.size(); ++i) ASSERT_EQ(seqs[i], seqs[i - 1] + 1) << "a gap after seq " << seqs[i - 1];
  // It began in a file that has since been renamed away at least three times.
  const auto first_live_now = json::parse(lines_of(read_file(d().audit_path())).front()).at("seq").to_number<std::uint64_t>();
  EXPECT_LT(seqs.front(), first_live_now);
  EXPECT_FALSE(tail.wait_exit(std::chrono::seconds(0)).has_value()) << "tail -f stopped by itself";
  EXPECT_EQ(read_file(path("tail.err")), "");
}

TEST_F(CustodyctlAuditE2E, TailStopsWithAnErrorOnATamperedRecord) {
  ASSERT_EQ(d().create_key("tampered", "aes-256-gcm", allow_me_everything()), 201);
  // A copy of the live file: the daemon's own log stays whole for the other tests.
  const std::string copy = path("copy.jsonl");
  write_file(copy, read_file(d().audit_path()));
  const auto lines = lines_of(read_file(copy));
  ASSERT_GE(lines.size(), 3u);
  Background tail(ctl_command(d(), "audit tail -f --log " + copy), path("tamper.out"), path("tamper.err"));
  ASSERT_TRUE(tail.started());
  ASSERT_TRUE(eventually([&] { return read_file(path("tamper.out")).find("seq ") != std::string::npos; }));
  EXPECT_FALSE(tail.wait_exit(std::chrono::seconds(0)).has_value()) << read_file(path("tamper.err"));
  {
    std::ofstream out(copy, std::ios::app);
    out << forged_successor(lines.back()) << '\n';
  }
  auto status = tail.wait_exit(std::chrono::seconds(20));
  ASSERT_TRUE(status.has_value()) << "tail -f went on past a forged record";
  EXPECT_EQ(*status, 4);
  EXPECT_NE(read_file(path("tamper.err")).find("BROKEN"), std::string::npos) << read_file(path("tamper.err"));

  // Without -f: a record changed in the middle stops it too.
  auto changed = lines;
  auto middle = json::parse(changed[1]).as_object();
  middle["result"] = "ok-but-changed";
  changed[1] = json::serialize(middle);
  std::string text;
  for (const auto& l : changed) text += l + "\n";
  write_file(path("changed.jsonl"), text);
  EXPECT_EQ(ctl("audit tail --log " + path("changed.jsonl") + " >/dev/null 2>&1"), 4);
  EXPECT_EQ(ctl("audit tail --log " + copy + ".none >/dev/null 2>&1"), 2);
}

TEST_F(CustodyctlAuditE2E, ReportUsageCountsPerKeyVersionPeerAndResultAcrossRotatedFiles) {
  if (::getuid() != 0) GTEST_SKIP() << "needs root to act as another uid";
  ASSERT_EQ(d().create_key("reported", "aes-256-gcm", allow_me_everything()), 201);
  const std::size_t rotated_before = rotated_files(d()).size();
  constexpr int kWraps = 40;
  wrap("reported", kWraps);
  ASSERT_GT(rotated_files(d()).size(), rotated_before) << "the wraps did not span a rotation";
  // Three unwraps with the wrong context: refused by the token's tag check.
  auto wrapped = d().post("/v1/keys/reported/wrap", json::object{{"plaintext", b64("x")}, {"context", {{"a", "b"}}}});
  ASSERT_EQ(wrapped.first, 200);
  for (int i = 0; i < 3; ++i)
    ASSERT_EQ(d().post("/v1/keys/reported/unwrap",
                       json::object{{"ciphertext", wrapped.second.at("ciphertext")}, {"context", {{"a", "c"}}}})
                  .first,
              400);
  ASSERT_EQ(::chmod(d().dir().c_str(), 0755), 0);
  // Another uid: one refused wrap, and a batch of 5 refused in one summary record.
  const int refused = run_as_nobody(d(), [&](client::UnixHttpClient& c) {
    auto one = c.call("POST", "/v1/keys/reported/wrap", json::serialize(json::object{{"plaintext", b64("x")}}));
    json::array items;
    for (int i = 0; i < 5; ++i) items.push_back(json::object{{"plaintext", b64("x")}});
    auto batch = c.call("POST", "/v1/keys/reported/wrap", json::serialize(json::object{{"batch", items}}));
    return one && one->status == 403 && batch && batch->status == 200 ? 1 : 0;
  });
  ASSERT_EQ(refused, 1);

  ASSERT_EQ(ctl("report usage --json --key reported --log " + d().audit_path() + " > " + path("usage.json")), 0);
  auto report = json::parse(read_file(path("usage.json")));
  EXPECT_TRUE(report.at("log").at("chain_ok").as_bool());
  EXPECT_GE(report.at("log").at("files").as_array().size(), 2u);
  auto count = [&](const std::string& op, std::int64_t uid, const std::string& result, bool with_version) {
    std::uint64_t n = 0;
    for (const auto& row : report.at("usage").as_array()) {
      EXPECT_EQ(row.at("key").as_string(), "reported");
      if (row.at("operation").as_string() == op && row.at("uid").to_number<std::int64_t>() == uid &&
          row.at("result").as_string() == result && row.at("version").is_null() != with_version)
        n += row.at("count").to_number<std::uint64_t>();
    }
    return n;
  };
  const auto me = static_cast<std::int64_t>(::getuid());
  EXPECT_EQ(count("wrap", me, "ok", true), kWraps + 1u);
  EXPECT_EQ(count("unwrap", me, "invalid_ciphertext", true), 3u);
  EXPECT_EQ(count("wrap", 65534, "permission_denied", false), 6u);

  // The human table; a period with nothing in it; a date that is not one.
  ASSERT_EQ(ctl("report usage --key reported --log " + d().audit_path() + " > " + path("usage.txt")), 0);
  const auto table = read_file(path("usage.txt"));
  EXPECT_NE(table.find("KEY"), std::string::npos) << table;
  EXPECT_NE(table.find("65534"), std::string::npos) << table;
  EXPECT_NE(table.find("permission_denied"), std::string::npos) << table;
  ASSERT_EQ(ctl("report usage --json --since 2999-01-01 --log " + d().audit_path() + " > " + path("none.json")), 0);
  EXPECT_TRUE(json::parse(read_file(path("none.json"))).at("usage").as_array().empty());
  ASSERT_EQ(ctl("report usage --json --since 1h --key reported --log " + d().audit_path() + " > " + path("hour.json")), 0);
  EXPECT_FALSE(json::parse(read_file(path("hour.json"))).at("usage").as_array().empty());
  EXPECT_EQ(ctl("report usage --since yesterday --log " + d().audit_path() + " 2>/dev/null"), 2);

  // A copy of the log with one record changed in a rotated file: refused unless asked.
  const std::string copy_dir = path("tampered-log");
  fs::create_directory(copy_dir);
  for (const auto& f : rotated_files(d())) fs::copy_file(f, copy_dir + "/" + fs::path(f).filename().string());
  fs::copy_file(d().audit_path(), copy_dir + "/audit.jsonl");
  const std::string victim = copy_dir + "/" + fs::path(rotated_files(d()).back()).filename().string();
  auto lines = lines_of(read_file(victim));
  ASSERT_GE(lines.size(), 2u);
  auto rec = json::parse(lines[1]).as_object();
  rec["result"] = "ok";
  rec["request_id"] = "rewritten";
  lines[1] = json::serialize(rec);
  std::string text;
  for (const auto& l : lines) text += l + "\n";
  write_file(victim, text);
  EXPECT_EQ(ctl("report usage --log " + copy_dir + " >/dev/null 2>" + path("broken.err")), 4);
  EXPECT_NE(read_file(path("broken.err")).find("broken"), std::string::npos) << read_file(path("broken.err"));
  EXPECT_EQ(ctl("report usage --allow-broken-chain --log " + copy_dir + " >/dev/null 2>/dev/null"), 0);
}

TEST(CustodyctlVerifyE2E, TailTruncationPassesTheChainAndFailsAgainstTheAttestation) {
  Daemon d;
  ASSERT_EQ(d.create_key("cut", "aes-256-gcm", allow_me_everything()), 201);
  for (int i = 0; i < 5; ++i)
    ASSERT_EQ(d.post("/v1/keys/cut/wrap", json::object{{"plaintext", b64("x")}}).first, 200);
  auto ctl = [&](const std::string& args) { return run(ctl_command(d, args)); };
  const std::string cut = d.dir() + "/cut.jsonl";
  ASSERT_EQ(run("head -n -3 " + d.audit_path() + " > " + cut), 0);
  const auto kept = lines_of(read_file(cut));
  const auto last_kept = json::parse(kept.back()).at("seq").to_number<std::uint64_t>();

  // The chain alone cannot see it.
  EXPECT_EQ(ctl("audit verify " + cut + " >/dev/null"), 0);
  // The daemon's attested sequence and head can.
  EXPECT_EQ(ctl("audit verify --against-attestation " + cut + " > " + d.dir() + "/cut.out 2>&1"), 4);
  EXPECT_NE(read_file(d.dir() + "/cut.out").find("TRUNCATED"), std::string::npos) << read_file(d.dir() + "/cut.out");
  // So can a sequence pinned earlier.
  EXPECT_EQ(ctl("audit verify --expect-seq " + std::to_string(last_kept + 1) + " " + cut + " >/dev/null"), 4);
  EXPECT_EQ(ctl("audit verify --expect-seq " + std::to_string(last_kept) + " " + cut + " >/dev/null"), 0);

  // The whole live log passes, with the attestation key pinned too.
  ASSERT_EQ(ctl("attest key | tail -n +2 > " + d.dir() + "/attest.pem"), 0);
  EXPECT_EQ(ctl("audit verify --against-attestation --public-key " + d.dir() + "/attest.pem " + d.audit_path() +
                " > " + d.dir() + "/whole.out"),
            0)
      << read_file(d.dir() + "/whole.out");
  EXPECT_NE(read_file(d.dir() + "/whole.out").find("matches the attested head"), std::string::npos);
  // The newest record rewritten: no later record holds its hash, so the chain cannot see it; the
  // next attestation names exactly that record's hash.
  auto all = lines_of(read_file(d.audit_path()));
  auto newest = json::parse(all.back()).as_object();
  newest["request_id"] = "rewritten";
  all.back() = json::serialize(newest);
  std::string forged;
  for (const auto& l : all) forged += l + "\n";
  write_file(d.dir() + "/forged.jsonl", forged);
  EXPECT_EQ(ctl("audit verify " + d.dir() + "/forged.jsonl >/dev/null"), 0);
  EXPECT_EQ(ctl("audit verify --against-attestation " + d.dir() + "/forged.jsonl > " + d.dir() + "/forged.out 2>&1"), 4);
  EXPECT_NE(read_file(d.dir() + "/forged.out").find("attested head"), std::string::npos) << read_file(d.dir() + "/forged.out");
  // Against an attestation signed by another key: refused before the log is judged.
  ASSERT_EQ(run("openssl ecparam -name prime256v1 -genkey -noout -out " + d.dir() + "/other.key && openssl pkey -in " +
                d.dir() + "/other.key -pubout -out " + d.dir() + "/other.pem"),
            0);
  EXPECT_EQ(ctl("audit verify --against-attestation --public-key " + d.dir() + "/other.pem " + d.audit_path() +
                " >/dev/null 2>&1"),
            4);
  // Verification without the daemon: unreachable is not "verified".
  EXPECT_EQ(run(std::string(CUSTODYCTL_PATH) + " --socket /nonexistent/s audit verify --against-attestation " +
                d.audit_path() + " >/dev/null 2>&1"),
            3);
}
