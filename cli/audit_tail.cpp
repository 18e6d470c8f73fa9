// custodyctl audit tail [-f]: prints the newest audit records and follows the log across
// rotations, checking the hash chain record by record. The daemon rotates by renaming the live
// file and opening a new one at the same path; the tail finishes the renamed file through the
// descriptor it holds, then moves to the new file, whose first record continues the chain.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <fstream>
#include <iostream>
#include <iterator>
#include <thread>

#include "cli/audit_log_files.h"
#include "cli/commands.h"
#include "common/pem.h"
#include "daemon/core/audit/audit_verify.h"

namespace custody::cli {
namespace {

namespace json = boost::json;

// How often a follower looks for new records: a human watches, a second of delay is too much.
constexpr auto kPollInterval = std::chrono::milliseconds(100);

std::string field(const json::object& o, const char* name) {
  const auto* v = o.if_contains(name);
  if (!v || v->is_null()) return {};
  return v->is_string() ? std::string(v->as_string()) : json::serialize(*v);
}

// One record on one line, the fields a reader scans for first.
std::string human_line(const json::object& o) {
  std::string line = "seq " + field(o, "seq") + "  " + field(o, "time") + "  " + field(o, "type") + "  " + field(o, "result");
  if (o.contains("key")) line += "  key " + field(o, "key") + (o.contains("version") ? " v" + field(o, "version") : "");
  if (o.contains("operation")) line += "  operation " + field(o, "operation");
  if (o.contains("operator")) line += "  operator " + field(o, "operator");
  if (const auto* c = o.if_contains("client"); c && c->is_object())
    line += "  uid " + field(c->as_object(), "uid") + " pid " + field(c->as_object(), "pid");
  if (o.contains("refused")) line += "  refused " + field(o, "refused");
  line += "  request " + field(o, "request_id");
  return line;
}

// The rotated file that holds the records after seq `last`: rotated files are named after their
// last record, so it is the one with the smallest suffix above `last`.
std::optional<std::string> next_rotated(const std::string& live, std::uint64_t last) {
  auto files = audit_log_files(live);
  if (!files) return std::nullopt;
  for (const auto& f : *files) {
    if (f.size() < 12 || f == live) continue;
    const std::uint64_t suffix = std::strtoull(f.c_str() + f.size() - 12, nullptr, 10);
    if (suffix > last) return f;  // files are in chain order
  }
  return std::nullopt;
}

class LogFollower {
 public:
  LogFollower(const TailOptions& o, std::shared_ptr<EVP_PKEY> key, bool raw)
      : options_(o), chain_(std::move(key)), raw_(raw) {}
  ~LogFollower() {
    if (fd_ >= 0) ::close(fd_);
  }

  int run() {
    fd_ = ::open(options_.log.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd_ < 0) {
      std::cerr << "custodyctl: cannot read " << options_.log << ": " << std::strerror(errno) << '\n';
      return kUsage;
    }
    for (;;) {
      auto got = drain();
      if (got != kOk) return got;
      if (!caught_up_) flush_backlog();
      if (!options_.follow) {
        if (!partial_.empty()) return broken("the last record does not end with a newline (truncated, or still being written)");
        return kOk;
      }
      auto moved = follow_rotation();
      if (moved != kOk) return moved;
      std::this_thread::sleep_for(kPollInterval);
    }
  }

 private:
  // Reads what the current file has, checking and printing every complete record.
  int drain() {
    char buf[65536];
    for (;;) {
      ssize_t n = ::read(fd_, buf, sizeof buf);
      if (n < 0) {
        if (errno == EINTR) continue;
        std::cerr << "custodyctl: cannot read " << options_.log << ": " << std::strerror(errno) << '\n';
        return kUnavailable;
      }
      if (n == 0) return kOk;
      partial_.append(buf, static_cast<std::size_t>(n));
      std::size_t start = 0;
      for (std::size_t nl; (nl = partial_.find('\n', start)) != std::string::npos; start = nl + 1) {
        std::string_view line(partial_.data() + start, nl - start);
        auto record = chain_.add(line);
        if (!record) {
          partial_.erase(0, start);
          return broken(record.error());
        }
        emit(line, *record);
      }
      partial_.erase(0, start);
    }
  }

  // When the live file was renamed away, finish it and go on in the new one.
  int follow_rotation() {
    struct stat now {}, held {};
    if (::stat(options_.log.c_str(), &now) != 0) return kOk;  // between the rename and the new file
    if (::fstat(fd_, &held) != 0) {
      std::cerr << "custodyctl: cannot stat " << options_.log << ": " << std::strerror(errno) << '\n';
      return kUnavailable;
    }
    if (now.st_ino == held.st_ino && now.st_dev == held.st_dev) return kOk;
    // Records written just before the rename are still in the old file.
    if (auto got = drain(); got != kOk) return got;
    if (!partial_.empty()) return broken("a rotated file ends inside a record (truncated)");
    // The log may have rotated more than once since the last look: read every file renamed in
    // between, in order, before the live one. The live file is opened before the rotated ones are
    // listed, so a rotation in between shows up in the listing and is read first.
    for (;;) {
      int live = ::open(options_.log.c_str(), O_RDONLY | O_CLOEXEC);
      if (live < 0) return kOk;  // between a rename and the new file: look next time
      auto rotated = next_rotated(options_.log, chain_.last_seq());
      if (!rotated) {
        ::close(fd_);
        fd_ = live;
        return kOk;
      }
      ::close(live);
      int next = ::open(rotated->c_str(), O_RDONLY | O_CLOEXEC);
      if (next < 0) continue;  // removed by retention meanwhile: the chain check says what is missing
      ::close(fd_);
      fd_ = next;
      if (auto got = drain(); got != kOk) return got;
      if (!partial_.empty()) return broken("a rotated file ends inside a record (truncated)");
    }
  }

  void emit(std::string_view line, const json::object& record) {
    std::string text = raw_ ? std::string(line) : human_line(record);
    if (!caught_up_) {
      backlog_.push_back(std::move(text));
      if (backlog_.size() > options_.lines) backlog_.pop_front();
      return;
    }
    std::cout << text << std::endl;
  }

  void flush_backlog() {
    for (const auto& text : backlog_) std::cout << text << '\n';
    std::cout << std::flush;
    backlog_.clear();
    caught_up_ = true;
  }

  int broken(const std::string& problem) {
    flush_backlog();
    std::cerr << "custodyctl: audit chain BROKEN at seq " << (chain_.next_seq() == 0 ? 1 : chain_.next_seq()) << " in "
              << options_.log << ": " << problem << "; stopped (" << chain_.records()
              << " records checked, last good seq " << chain_.last_seq() << ")\n";
    return kVerifyFailed;
  }

  const TailOptions& options_;
  core::AuditChainVerifier chain_;
  const bool raw_;
  int fd_ = -1;
  std::string partial_;  // bytes after the last newline read
  bool caught_up_ = false;
  std::deque<std::string> backlog_;  // the newest records of the first read, printed at its end
};

}  // namespace

int cmd_audit_tail(const Globals& g, const TailOptions& o) {
  std::shared_ptr<EVP_PKEY> key;
  if (!o.public_key_file.empty()) {
    std::ifstream in(o.public_key_file);
    std::string pem((std::istreambuf_iterator<char>(in)), {});
    key = read_public_key_pem(pem);
    if (!in || !key) {
      std::cerr << "custodyctl: " << o.public_key_file << " is not a readable PEM public key\n";
      return kUsage;
    }
  }
  LogFollower follower(o, std::move(key), g.json);
  return follower.run();
}

}  // namespace custody::cli
