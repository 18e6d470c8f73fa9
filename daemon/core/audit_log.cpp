#include "daemon/core/audit_log.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <utility>
#include <future>
#include <spdlog/spdlog.h>

#include "common/base64.h"
#include "common/hex.h"

namespace custody::core {
namespace {

constexpr auto kRetryAfterFailure = std::chrono::seconds(1);

bool write_all(int fd, const char* data, std::size_t len) {
  while (len > 0) {
    ssize_t n = ::write(fd, data, len);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data += n;
    len -= static_cast<std::size_t>(n);
  }
  return true;
}

// The last complete line of the file, reading backwards from its end in chunks.
Expected<std::string, std::string> read_last_line(int fd, std::uint64_t size) {
  std::string tail;
  std::uint64_t pos = size;
  constexpr std::size_t kChunk = 64 * 1024;
  while (pos > 0) {
    std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(kChunk, pos));
    pos -= n;
    std::string chunk(n, '\0');
    if (::pread(fd, chunk.data(), n, static_cast<off_t>(pos)) != static_cast<ssize_t>(n))
      return unexpected(std::string("cannot read the audit log: ") + std::strerror(errno));
    tail.insert(0, chunk);
    // tail ends with '\n'; the line starts after the newline before it.
    auto start = tail.rfind('\n', tail.size() - 2);
    if (start != std::string::npos) return tail.substr(start + 1, tail.size() - start - 2);
    if (tail.size() > 16 * 1024 * 1024) return unexpected(std::string("the audit log's last line is longer than 16 MiB"));
  }
  return tail.substr(0, tail.size() - 1);
}

}  // namespace

std::string checkpoint_message(std::uint64_t seq, const std::string& prev) {
  return "custody.audit.checkpoint.v1\n" + std::to_string(seq) + "\n" + prev + "\n";
}

std::string audit_line_hash(const std::string& line) {
  return sha256_hex(std::span(reinterpret_cast<const std::uint8_t*>(line.data()), line.size()));
}

Expected<std::unique_ptr<AuditLog>, std::string> AuditLog::open(const std::string& path, AuditDurability durability,
                                                                const Clock& clock) {
  int fd = ::open(path.c_str(), O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
  if (fd < 0) return unexpected("cannot open audit log " + path + ": " + std::strerror(errno));
  // Two writers would fork the chain: one daemon per log.
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    ::close(fd);
    return unexpected("audit log " + path + " is locked by another process; is another custodyd using it?");
  }
  struct stat st {};
  ::fstat(fd, &st);
  std::uint64_t size = static_cast<std::uint64_t>(st.st_size);
  std::uint64_t seq = 0;
  std::string prev = kAuditGenesis;
  if (size > 0) {
    // A record cut short by a crash was never acknowledged (replies wait for the write): drop it.
    char last = 0;
    ::pread(fd, &last, 1, static_cast<off_t>(size - 1));
    if (last != '\n') {
      std::string all(size, '\0');
      ::pread(fd, all.data(), size, 0);
      auto cut = all.rfind('\n');
      std::uint64_t keep = cut == std::string::npos ? 0 : cut + 1;
      spdlog::warn("audit log {} ends in an incomplete record ({} bytes); truncating it", path, size - keep);
      if (::ftruncate(fd, static_cast<off_t>(keep)) != 0) {
        ::close(fd);
        return unexpected("cannot truncate the incomplete record at the end of " + path);
      }
      size = keep;
    }
  }
  if (size > 0) {
    auto line = read_last_line(fd, size);
    if (!line) {
      ::close(fd);
      return unexpected(line.error());
    }
    boost::system::error_code ec;
    auto v = boost::json::parse(*line, ec);
    const boost::json::value* s = (!ec && v.is_object()) ? v.as_object().if_contains("seq") : nullptr;
    if (!s || !s->is_int64() || s->as_int64() < 1) {
      ::close(fd);
      return unexpected("the last record of audit log " + path +
                        " is not a custody audit record; check it with custodyctl audit verify");
    }
    seq = static_cast<std::uint64_t>(s->as_int64());
    prev = audit_line_hash(*line);
  }
  return std::unique_ptr<AuditLog>(new AuditLog(path, fd, durability, clock, seq, prev, size));
}

AuditLog::AuditLog(std::string path, int fd, AuditDurability durability, const Clock& clock, std::uint64_t seq,
                   std::string prev, std::uint64_t size)
    : path_(std::move(path)), fd_(fd), durability_(durability), clock_(clock), seq_(seq), prev_(std::move(prev)),
      size_(size) {
  writer_ = std::thread([this] { run(); });
}

AuditLog::~AuditLog() {
  stop();
  ::close(fd_);
}

void AuditLog::stop() {
  {
    std::lock_guard lock(mutex_);
    if (stopping_ && !writer_.joinable()) return;
    stopping_ = true;
  }
  wake_.notify_all();
  if (writer_.joinable()) writer_.join();
}

void AuditLog::submit(std::vector<AuditEvent> events, Done done) {
  {
    std::lock_guard lock(mutex_);
    if (!stopping_) {
      queue_.push_back({std::move(events), std::move(done)});
      wake_.notify_one();
      return;
    }
  }
  done(false);
}

bool AuditLog::write(std::vector<AuditEvent> events) {
  std::promise<bool> written;
  auto result = written.get_future();
  submit(std::move(events), [&written](bool ok) { written.set_value(ok); });
  return result.get();
}

bool AuditLog::accepting() const {
  std::lock_guard lock(mutex_);
  if (stopping_) return false;
  return !failed_ || std::chrono::steady_clock::now() - failed_at_ >= kRetryAfterFailure;
}

std::uint64_t AuditLog::sequence() const {
  std::lock_guard lock(mutex_);
  return seq_;
}

std::string AuditLog::head() const {
  std::lock_guard lock(mutex_);
  return prev_;
}

std::uint64_t AuditLog::records_written() const {
  std::lock_guard lock(mutex_);
  return written_;
}

void AuditLog::run() {
  for (;;) {
    std::vector<Pending> group;
    {
      std::unique_lock lock(mutex_);
      wake_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (queue_.empty() && stopping_) return;
      while (!queue_.empty()) {
        group.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
    }
    const bool ok = write_group(group);
    for (auto& p : group) p.done(ok);
  }
}

std::string AuditLog::render(const AuditEvent& e, std::uint64_t seq, const std::string& prev) const {
  boost::json::object o;
  o["seq"] = seq;
  o["time"] = rfc3339(clock_.now(), true);
  o["prev"] = prev;
  o["type"] = e.type;
  o["request_id"] = e.request_id;
  o["client"] = {{"uid", e.client.uid}, {"gid", e.client.gid}, {"pid", e.client.pid}};
  o["result"] = e.result;
  if (e.key) o["key"] = *e.key;
  if (e.version) o["version"] = *e.version;
  if (e.operation) o["operation"] = *e.operation;
  if (e.operator_name) o["operator"] = *e.operator_name;
  if (e.context_sha256) o["context_sha256"] = *e.context_sha256;
  for (const auto& [k, v] : e.extra) o[k] = v;
  return boost::json::serialize(o);
}

void AuditLog::set_checkpoints(Signer signer, std::uint64_t every, Peer self) {
  std::lock_guard lock(mutex_);
  signer_ = std::move(signer);
  checkpoint_every_ = every;
  self_ = self;
}

void AuditLog::set_rotation(std::uint64_t max_bytes) {
  std::lock_guard lock(mutex_);
  max_bytes_ = max_bytes;
}

bool AuditLog::rotate() {
  char suffix[32];
  std::snprintf(suffix, sizeof suffix, ".%012llu", static_cast<unsigned long long>(seq_));
  const std::string rotated = path_ + suffix;
  if (::rename(path_.c_str(), rotated.c_str()) != 0) {
    spdlog::error("cannot rotate the audit log to {}: {}", rotated, std::strerror(errno));
    return false;
  }
  int fd = ::open(path_.c_str(), O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
  if (fd < 0 || ::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    spdlog::error("cannot open a new audit log at {}: {}", path_, std::strerror(errno));
    if (fd >= 0) ::close(fd);
    ::rename(rotated.c_str(), path_.c_str());
    return false;
  }
  // The rename and the new file must survive a crash: sync the directory.
  auto slash = path_.rfind('/');
  const std::string dir = slash == std::string::npos ? "." : path_.substr(0, slash ? slash : 1);
  if (int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
  ::close(fd_);
  fd_ = fd;
  size_ = 0;
  spdlog::info("audit log rotated: {} continues the chain of {}", path_, rotated);
  return true;
}

bool AuditLog::checkpoint() {
  {
    std::lock_guard lock(mutex_);
    if (!signer_) return false;
    checkpoint_now_ = true;
  }
  return write({});
}

std::optional<std::string> AuditLog::render_checkpoint(std::uint64_t seq, const std::string& prev) const {
  auto signature = signer_(checkpoint_message(seq, prev));
  if (!signature) {
    spdlog::error("audit checkpoint {} not signed: {}", seq, signature.error());
    return std::nullopt;
  }
  AuditEvent e;
  e.type = "checkpoint";
  e.request_id = "-";
  e.client = self_;
  e.extra["signature"] = base64_encode(*signature);
  return render(e, seq, prev);
}

bool AuditLog::write_group(std::vector<Pending>& group) {
  // Only this thread changes seq_/prev_/size_, so they can be read without the lock here.
  std::uint64_t seq = seq_;
  std::string prev = prev_;
  std::string buffer;
  bool ok = true;
  std::uint64_t count = 0;
  bool forced = false;
  {
    std::lock_guard lock(mutex_);
    forced = std::exchange(checkpoint_now_, false);
  }
  // A checkpoint takes its place in the sequence: the Nth, 2Nth, … record, or now when forced.
  auto maybe_checkpoint = [&](bool now) {
    if (!signer_ || (!now && (checkpoint_every_ == 0 || (seq + 1) % checkpoint_every_ != 0))) return;
    if (auto line = render_checkpoint(seq + 1, prev)) {
      ++seq;
      prev = audit_line_hash(*line);
      buffer += *line;
      buffer += '\n';
      ++count;
    }
  };
  // Writes the buffer (rotating first when it would pass the size limit); `always` syncs here.
  std::uint64_t file_size = size_;
  auto flush = [&]() -> bool {
    if (buffer.empty()) return true;
    if (max_bytes_ && file_size > 0 && file_size + buffer.size() > max_bytes_ && rotate()) file_size = 0;
    if (!write_all(fd_, buffer.data(), buffer.size())) return false;
    file_size += buffer.size();
    buffer.clear();
    return durability_ != AuditDurability::always || ::fdatasync(fd_) == 0;
  };
  if (forced) maybe_checkpoint(true);
  for (const auto& p : group) {
    for (const auto& e : p.events) {
      maybe_checkpoint(false);
      std::string line = render(e, ++seq, prev);
      prev = audit_line_hash(line);
      buffer += line;
      buffer += '\n';
      ++count;
      if (durability_ == AuditDurability::always && !(ok = flush())) break;
    }
    if (!ok) break;
  }
  if (ok) ok = flush();
  if (ok && durability_ == AuditDurability::group) ok = ::fdatasync(fd_) == 0;

  std::lock_guard lock(mutex_);
  if (!ok) {
    const int err = errno;
    // Roll back to the last good record so the chain on disk stays whole.
    if (::ftruncate(fd_, static_cast<off_t>(size_)) != 0) spdlog::error("cannot roll back the audit log: {}", std::strerror(errno));
    if (!failed_) spdlog::error("audit log {} is not writable ({}); refusing requests until it is", path_, std::strerror(err));
    failed_ = true;
    failed_at_ = std::chrono::steady_clock::now();
    return false;
  }
  if (failed_) spdlog::info("audit log {} is writable again", path_);
  failed_ = false;
  struct stat st {};
  ::fstat(fd_, &st);
  size_ = static_cast<std::uint64_t>(st.st_size);
  seq_ = seq;
  prev_ = prev;
  written_ += count;
  return true;
}

}  // namespace custody::core
