#include "daemon/core/audit/audit_log.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <boost/json.hpp>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <future>
#include <spdlog/spdlog.h>
#include <tuple>
#include <utility>

#include "common/base64.h"
#include "common/hex.h"

namespace custody::core {
namespace {

// Runs one step of the writer's work; an exception is logged and the writer goes on (on its own
// thread it would end the process, and leave submitters waiting forever).
template <class Fn>
bool survive(const char* step, Fn&& fn) {
  try {
    fn();
    return true;
  } catch (const std::exception& e) {
    spdlog::error("audit writer: {} threw: {}", step, e.what());
  } catch (...) {
    spdlog::error("audit writer: {} threw an unknown exception", step);
  }
  return false;
}

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

// n bytes at offset, all of them: a short read is an error too.
Expected<void, std::string> pread_all(int fd, char* data, std::size_t n, std::uint64_t offset) {
  std::size_t got = 0;
  while (got < n) {
    const ssize_t r = ::pread(fd, data + got, n - got, static_cast<off_t>(offset + got));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return unexpected(std::string(std::strerror(errno)));
    if (r == 0) return unexpected(std::string("the file became shorter while it was read"));
    got += static_cast<std::size_t>(r);
  }
  return {};
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
    if (auto read = pread_all(fd, chunk.data(), n, pos); !read) return unexpected(read.error());
    tail.insert(0, chunk);
    // tail ends with '\n'; the line starts after the newline before it.
    auto start = tail.rfind('\n', tail.size() - 2);
    if (start != std::string::npos) return tail.substr(start + 1, tail.size() - start - 2);
    if (tail.size() > 16 * 1024 * 1024) return unexpected(std::string("the audit log's last line is longer than 16 MiB"));
  }
  return tail.substr(0, tail.size() - 1);
}

// Where the file's last complete line ends (the offset after its '\n'; 0: none), reading
// backwards from the end in chunks, never more than the incomplete tail and one chunk.
Expected<std::uint64_t, std::string> end_of_last_line(int fd, std::uint64_t size) {
  constexpr std::size_t kChunk = 64 * 1024;
  std::string chunk;
  std::uint64_t pos = size;
  while (pos > 0) {
    const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(kChunk, pos));
    pos -= n;
    chunk.assign(n, '\0');
    if (auto read = pread_all(fd, chunk.data(), n, pos); !read) return unexpected(read.error());
    if (auto nl = chunk.rfind('\n'); nl != std::string::npos) return pos + nl + 1;
  }
  return std::uint64_t{0};
}

// The first line of a file, at most 16 MiB long; empty for an empty file.
Expected<std::string, std::string> read_first_line(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return unexpected("cannot open " + path + ": " + std::strerror(errno));
  std::string head;
  char chunk[4096];
  for (;;) {
    ssize_t n = ::read(fd, chunk, sizeof chunk);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int err = errno;
      ::close(fd);
      return unexpected("cannot read " + path + ": " + std::strerror(err));
    }
    head.append(chunk, static_cast<std::size_t>(n));
    if (auto nl = head.find('\n'); nl != std::string::npos) {
      head.resize(nl);
      break;
    }
    if (n == 0 || head.size() > 16 * 1024 * 1024) break;
  }
  ::close(fd);
  return head;
}

// seq and type of a record line; nullopt if it is not a custody audit record.
struct RecordHead {
  std::uint64_t seq = 0;
  bool checkpoint = false;
};
std::optional<RecordHead> record_head(const std::string& line) {
  boost::system::error_code ec;
  auto v = boost::json::parse(line, ec);
  if (ec || !v.is_object()) return std::nullopt;
  const auto* seq = v.as_object().if_contains("seq");
  if (!seq || !seq->is_int64() || seq->as_int64() < 1) return std::nullopt;
  const auto* type = v.as_object().if_contains("type");
  return RecordHead{static_cast<std::uint64_t>(seq->as_int64()), type && *type == "checkpoint"};
}

std::string directory_of(const std::string& path) {
  auto slash = path.rfind('/');
  return slash == std::string::npos ? "." : path.substr(0, slash ? slash : 1);
}

// A rename or unlink must survive a crash: sync the directory. False when that cannot be done.
bool sync_directory(const std::string& dir) {
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  const bool synced = dfd >= 0 && ::fsync(dfd) == 0;
  if (!synced) spdlog::warn("cannot sync directory {}: {}", dir, std::strerror(errno));
  if (dfd >= 0) ::close(dfd);
  return synced;
}

Expected<std::uint64_t, std::string> statvfs_free_bytes(const std::string& dir) {
  struct statvfs st {};
  if (::statvfs(dir.c_str(), &st) != 0) return unexpected("statvfs " + dir + ": " + std::strerror(errno));
  return static_cast<std::uint64_t>(st.f_bavail) * static_cast<std::uint64_t>(st.f_frsize);
}

std::string rotated_name(const std::string& path, std::uint64_t last_seq) {
  char suffix[32];
  std::snprintf(suffix, sizeof suffix, ".%012llu", static_cast<unsigned long long>(last_seq));
  return path + suffix;
}

// The rotated files of the log at path ("<path>.<last seq, 12+ digits>"), oldest first. The
// first seq of each is the one after its predecessor's last; the oldest's is read from it.
std::vector<std::tuple<std::string, std::uint64_t, std::uint64_t>> find_rotated(const std::string& path) {
  namespace fs = std::filesystem;
  std::vector<std::tuple<std::string, std::uint64_t, std::uint64_t>> found;  // path, last seq, bytes
  const std::string prefix = fs::path(path).filename().string() + ".";
  std::error_code ec;
  for (fs::directory_iterator it(directory_of(path), ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.size() < prefix.size() + 12 || name.compare(0, prefix.size(), prefix) != 0) continue;
    const std::string digits = name.substr(prefix.size());
    if (digits.size() > 19 || !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; }))
      continue;
    std::error_code size_ec;
    const auto bytes = it->file_size(size_ec);
    if (size_ec || !it->is_regular_file(size_ec)) continue;
    found.emplace_back(it->path().string(), std::stoull(digits), bytes);
  }
  if (ec) spdlog::warn("cannot list the rotated audit files next to {}: {}", path, ec.message());
  std::sort(found.begin(), found.end(), [](const auto& a, const auto& b) { return std::get<1>(a) < std::get<1>(b); });
  return found;
}

}  // namespace

std::string checkpoint_message(std::uint64_t seq, const std::string& prev) {
  return "custody.audit.checkpoint.v1\n" + std::to_string(seq) + "\n" + prev + "\n";
}

Expected<std::string, std::string> audit_line_hash(const std::string& line) {
  return sha256_hex(std::span(reinterpret_cast<const std::uint8_t*>(line.data()), line.size()));
}

Expected<std::unique_ptr<AuditLog>, std::string> AuditLog::open(const std::string& path, AuditDurability durability,
                                                                const Clock& clock) {
  int fd = ::open(path.c_str(), O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return unexpected("cannot open audit log " + path + ": " + std::strerror(errno));
  // Two writers would fork the chain: one daemon per log.
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    ::close(fd);
    return unexpected("audit log " + path + " is locked by another process; is another custodyd using it?");
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    return unexpected("cannot stat audit log " + path + ": " + std::strerror(err));
  }
  std::uint64_t size = static_cast<std::uint64_t>(st.st_size);
  std::uint64_t seq = 0;
  std::string prev = kAuditGenesis;
  Found found;
  if (size > 0) {
    // A record cut short by a crash was never acknowledged (replies wait for the write): drop it.
    // Only the tail is read, backwards from the end: the file may be hundreds of MB.
    auto cut = end_of_last_line(fd, size);
    if (!cut) {
      ::close(fd);
      return unexpected("cannot read audit log " + path + ": " + cut.error());
    }
    if (*cut != size) {
      const std::uint64_t keep = *cut;
      spdlog::warn("audit log {} ends in an incomplete record ({} bytes); truncating it", path, size - keep);
      if (::ftruncate(fd, static_cast<off_t>(keep)) != 0) {
        const int err = errno;
        ::close(fd);
        return unexpected("cannot truncate the incomplete record at the end of " + path + ": " + std::strerror(err));
      }
      size = keep;
    }
  }
  if (size > 0) {
    auto line = read_last_line(fd, size);
    if (!line) {
      ::close(fd);
      return unexpected("cannot read the last record of audit log " + path + ": " + line.error());
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
    auto hash = audit_line_hash(*line);
    if (!hash) {
      ::close(fd);  // only read from: nothing to lose
      return unexpected("cannot hash the last record of audit log " + path + ": " + hash.error());
    }
    prev = std::move(*hash);
    found.ends_with_checkpoint = v.as_object().if_contains("type") && v.as_object().at("type") == "checkpoint";
  }
  found.seq = seq;
  found.prev = prev;
  found.size = size;
  found.first_seq = seq + 1;
  if (size > 0) {
    // Only names the file's range in a retention record: unknown (0) is no reason not to start.
    auto first = read_first_line(path);
    auto head = first ? record_head(*first) : std::optional<RecordHead>{};
    found.first_seq = head ? head->seq : 0;
  }
  for (auto& [file, last_seq, bytes] : find_rotated(path)) {
    std::uint64_t first_seq = 0;  // 0: unknown
    if (!found.rotated.empty()) {
      first_seq = found.rotated.back().last_seq + 1;
    } else if (auto first = read_first_line(file); first) {
      if (auto head = record_head(*first)) first_seq = head->seq;
    }
    found.rotated.push_back({std::move(file), first_seq, last_seq, bytes});
  }
  if (size == 0 && !found.rotated.empty()) {
    // A crash between a rotation's rename and the first record of the new file leaves it empty:
    // the chain goes on from the newest rotated file, never from seq 1 again.
    const auto& newest = found.rotated.back().path;
    int rfd = ::open(newest.c_str(), O_RDONLY | O_CLOEXEC);
    struct stat rst {};
    if (rfd < 0 || ::fstat(rfd, &rst) != 0 || rst.st_size == 0) {
      if (rfd >= 0) ::close(rfd);
      ::close(fd);
      return unexpected("cannot read the newest rotated audit file " + newest + " to continue its chain");
    }
    auto line = read_last_line(rfd, static_cast<std::uint64_t>(rst.st_size));
    ::close(rfd);
    if (!line) {
      ::close(fd);
      return unexpected("cannot read the last record of the newest rotated audit file " + newest + ": " + line.error());
    }
    auto head = line ? record_head(*line) : std::optional<RecordHead>{};
    if (!head) {
      ::close(fd);
      return unexpected("the last record of " + newest + " is not a custody audit record; check it with custodyctl audit verify");
    }
    auto hash = audit_line_hash(*line);
    if (!hash) {
      ::close(fd);
      return unexpected("cannot hash the last record of " + newest + ": " + hash.error());
    }
    found.seq = head->seq;
    found.prev = std::move(*hash);
    found.first_seq = head->seq + 1;
    found.ends_with_checkpoint = head->checkpoint;
    spdlog::warn("audit log {} is empty; continuing the chain of {} at seq {}", path, newest, head->seq + 1);
  }
  return std::unique_ptr<AuditLog>(new AuditLog(path, fd, durability, clock, std::move(found)));
}

AuditLog::AuditLog(std::string path, int fd, AuditDurability durability, const Clock& clock, Found found)
    : free_space_(statvfs_free_bytes), path_(std::move(path)), fd_(fd), durability_(durability), clock_(clock),
      seq_(found.seq), prev_(std::move(found.prev)), size_(found.size), first_seq_(found.first_seq),
      rotated_(std::move(found.rotated)) {
  if (found.ends_with_checkpoint) last_checkpoint_seq_ = seq_;
  else if (seq_ > 0) uncovered_since_ = std::chrono::steady_clock::now();
  writer_ = std::thread([this] { run(); });
}

AuditLog::~AuditLog() {
  stop();
  // Every record was written and synced (as configured) before it was acknowledged; close can
  // add nothing to that, and there is no one left to tell.
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

void AuditLog::submit(std::vector<AuditEvent> events, Done done) { enqueue({std::move(events), std::move(done)}); }

void AuditLog::enqueue(Pending pending) {
  {
    std::lock_guard lock(mutex_);
    if (!stopping_) {
      queue_.push_back(std::move(pending));
      wake_.notify_one();
      return;
    }
  }
  pending.done(false);
}

bool AuditLog::write(std::vector<AuditEvent> events) {
  std::promise<bool> written;
  auto result = written.get_future();
  enqueue({std::move(events), [&written](bool ok) { written.set_value(ok); }, true});
  return result.get();
}

void AuditLog::set_delivery(Deliver deliver) {
  std::lock_guard lock(mutex_);
  deliver_ = std::move(deliver);
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

std::optional<AuditLog::SteadyTime> AuditLog::checkpoint_due() const {
  if (!signer_ || checkpoint_interval_.count() <= 0 || !uncovered_since_) return std::nullopt;
  auto due = *uncovered_since_ + checkpoint_interval_;
  // A failing disk is retried at the failure pace, not in a busy loop.
  if (failed_) due = std::max(due, failed_at_ + kRetryAfterFailure);
  return due;
}

void AuditLog::run() {
  for (;;) {
    std::vector<Pending> group;
    bool checkpoint_first = false;
    {
      std::unique_lock lock(mutex_);
      // Sleeps until records come, or until a quiet log owes a checkpoint; never while another
      // thread holds the writer's role (write_now).
      for (;;) {
        if (writing_) {
          wake_.wait(lock);
          continue;
        }
        if (!queue_.empty() || stopping_) break;
        auto due = checkpoint_due();
        if (!due) {
          wake_.wait(lock);
        } else if (std::chrono::steady_clock::now() >= *due) {
          checkpoint_first = true;
          break;
        } else {
          wake_.wait_until(lock, *due);
        }
      }
      if (queue_.empty() && stopping_) return;
      checkpoint_first = std::exchange(checkpoint_now_, false) || checkpoint_first;
      while (!queue_.empty()) {
        group.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
      writing_ = true;
    }
    const bool ok = write_group_or_fail(group, checkpoint_first);
    survive("completing a group", [&] { complete(group, ok); });
    if (ok) survive("enforcing retention", [&] { enforce_retention(); });
    {
      std::lock_guard lock(mutex_);
      writing_ = false;
    }
  }
}

bool AuditLog::write_group_or_fail(std::vector<Pending>& group, bool checkpoint_first) {
  bool ok = false;
  if (survive("writing a group", [&] { ok = write_group(group, checkpoint_first); })) return ok;
  std::lock_guard lock(mutex_);
  // Back to the last committed record, as after a failed write, so the chain on disk stays whole.
  if (::ftruncate(fd_, static_cast<off_t>(size_)) != 0) spdlog::error("cannot roll back the audit log: {}", std::strerror(errno));
  if (!failed_) spdlog::error("audit log {} failed; refusing requests until a write succeeds", path_);
  failed_ = true;
  failed_at_ = std::chrono::steady_clock::now();  // a checkpoint owed is retried at the failure pace
  return false;
}

std::optional<bool> AuditLog::write_now(std::vector<AuditEvent>& events) {
  {
    std::lock_guard lock(mutex_);
    if (stopping_ || writing_ || !queue_.empty() || checkpoint_now_ || failed_) return std::nullopt;
    writing_ = true;
  }
  std::vector<Pending> group;
  group.push_back({std::move(events), nullptr});
  const bool ok = write_group_or_fail(group, false);
  if (ok) survive("enforcing retention", [&] { enforce_retention(); });
  {
    std::lock_guard lock(mutex_);
    writing_ = false;
  }
  // Records may have been queued meanwhile, or a checkpoint fallen due: the writer takes over.
  wake_.notify_one();
  return ok;
}

void AuditLog::complete(std::vector<Pending>& group, bool written) {
  Completions handed_over;
  for (auto& p : group) {
    if (!p.done) continue;
    if (deliver_ && !p.direct) handed_over.push_back(std::move(p.done));
    else p.done(written);
  }
  if (!handed_over.empty()) deliver_(std::move(handed_over), written);
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

void AuditLog::set_checkpoint_interval(std::chrono::milliseconds interval) {
  {
    std::lock_guard lock(mutex_);
    checkpoint_interval_ = interval;
  }
  wake_.notify_all();  // the writer may be sleeping without a deadline
}

void AuditLog::set_rotation(std::uint64_t max_bytes) {
  std::lock_guard lock(mutex_);
  max_bytes_ = max_bytes;
}

void AuditLog::set_retention(AuditRetention retention) {
  std::lock_guard lock(mutex_);
  retention_ = retention;
}

void AuditLog::set_free_space_probe(FreeSpaceProbe probe) {
  std::lock_guard lock(mutex_);
  free_space_ = std::move(probe);
}

AuditStorage AuditLog::storage() const {
  AuditStorage s;
  FreeSpaceProbe probe;
  {
    std::lock_guard lock(mutex_);
    s.files = rotated_.size() + 1;
    s.bytes = size_;
    for (const auto& f : rotated_) s.bytes += f.bytes;
    s.min_free_bytes = retention_.min_free_bytes;
    probe = free_space_;
  }
  if (probe) {
    if (auto free = probe(directory_of(path_))) s.free_bytes = *free;
    else spdlog::warn("cannot read the free space of the audit filesystem: {}", free.error());
  }
  return s;
}

std::uint64_t AuditLog::last_checkpoint_sequence() const {
  std::lock_guard lock(mutex_);
  return last_checkpoint_seq_;
}

std::chrono::steady_clock::duration AuditLog::since_last_checkpoint() const {
  std::lock_guard lock(mutex_);
  return std::chrono::steady_clock::now() - last_checkpoint_at_;
}

bool AuditLog::rotate() {
  // Every record the new name promises must be on disk before the rename.
  if (durability_ != AuditDurability::none && ::fdatasync(fd_) != 0) {
    spdlog::error("cannot sync the audit log before rotating it: {}", std::strerror(errno));
    return false;
  }
  const std::string rotated = rotated_name(path_, seq_);
  // Never onto an existing file: a rotated file holds acknowledged records, and a plain rename
  // would replace it without a word.
  if (::renameat2(AT_FDCWD, path_.c_str(), AT_FDCWD, rotated.c_str(), RENAME_NOREPLACE) != 0) {
    spdlog::error("cannot rotate the audit log to {}: {}", rotated, std::strerror(errno));
    return false;
  }
  int fd = ::open(path_.c_str(), O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0 || ::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    spdlog::error("cannot open a new audit log at {}: {}", path_, std::strerror(errno));
    if (fd >= 0) ::close(fd);
    if (::rename(rotated.c_str(), path_.c_str()) != 0)
      spdlog::error("cannot rename {} back to {}: {}", rotated, path_, std::strerror(errno));
    return false;
  }
  // Records written to the new file before its name is durable could vanish with it in a crash:
  // without the directory sync, undo the rotation and fail the write (it is retried later).
  if (!sync_directory(directory_of(path_))) {
    ::close(fd);
    // The rename below replaces the new, empty file anyway: its unlink is only tidiness.
    (void)::unlink(path_.c_str());
    if (::rename(rotated.c_str(), path_.c_str()) != 0)
      spdlog::error("cannot rename {} back to {}: {}", rotated, path_, std::strerror(errno));
    return false;
  }
  ::close(fd_);  // the rotated file: each of its records was synced (as configured) when written
  fd_ = fd;
  {
    std::lock_guard lock(mutex_);
    rotated_.push_back({rotated, first_seq_, seq_, size_});
    first_seq_ = seq_ + 1;
    size_ = 0;
    removal_failed_.clear();
  }
  spdlog::info("audit log rotated: {} continues the chain of {}", path_, rotated);
  return true;
}

void AuditLog::enforce_retention() {
  std::vector<RotatedFile> doomed;
  Peer self;
  bool was_covered = false;
  {
    std::lock_guard lock(mutex_);
    was_covered = !uncovered_since_;
    if (retention_.max_files == 0 && retention_.max_total_bytes == 0) return;
    std::uint64_t files = rotated_.size() + 1;
    std::uint64_t bytes = size_;
    for (const auto& f : rotated_) bytes += f.bytes;
    for (const auto& f : rotated_) {
      const bool over = (retention_.max_files && files > retention_.max_files) ||
                        (retention_.max_total_bytes && bytes > retention_.max_total_bytes);
      // Oldest first and never past a file no newer checkpoint covers: what stays must start
      // where a signature still vouches for the chain.
      if (!over || f.path == removal_failed_ || f.last_seq >= last_checkpoint_seq_) break;
      doomed.push_back(f);
      --files;
      bytes -= f.bytes;
    }
    self = self_;
  }
  if (doomed.empty()) return;
  // The removal is recorded (and synced) before the file goes: no file leaves unaccounted.
  std::vector<AuditEvent> events;
  for (const auto& f : doomed) {
    auto& e = events.emplace_back();
    e.type = "audit.retention";
    e.request_id = "-";
    e.client = self;
    e.extra["file"] = f.path;
    if (f.first_seq) e.extra["first_seq"] = f.first_seq;
    e.extra["last_seq"] = f.last_seq;
    e.extra["bytes"] = f.bytes;
  }
  std::vector<Pending> group;
  group.push_back({std::move(events), nullptr});
  if (!write_group(group, false)) {
    spdlog::error("audit retention postponed: its record could not be written");
    return;
  }
  // A log that ended in a checkpoint (the closing one at shutdown) still does.
  if (was_covered && signer_) {
    std::vector<Pending> none;
    write_group(none, true);
  }
  for (const auto& f : doomed) {
    if (::unlink(f.path.c_str()) != 0 && errno != ENOENT) {
      spdlog::error("audit retention: cannot remove {}: {}", f.path, std::strerror(errno));
      std::lock_guard lock(mutex_);
      removal_failed_ = f.path;
      break;
    }
    spdlog::info("audit retention: removed {} (records {}..{}, {} bytes); a newer signed checkpoint covers them", f.path,
                 f.first_seq, f.last_seq, f.bytes);
    std::lock_guard lock(mutex_);
    std::erase_if(rotated_, [&](const RotatedFile& r) { return r.path == f.path; });
  }
  // A removal the crash undoes is only done again at the next retention pass.
  (void)sync_directory(directory_of(path_));
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

bool AuditLog::write_group(std::vector<Pending>& group, bool checkpoint_first) {
  // Only this thread changes seq_/prev_/size_/fd_ (under the mutex, for the readers), so it reads
  // them without the lock. Records are committed to them once written (and synced as configured).
  std::uint64_t seq = seq_;
  std::string prev = prev_;
  std::string buffer;
  std::uint64_t uncommitted = 0;       // records rendered since the last commit
  std::uint64_t newest_checkpoint = 0;  // seq of the newest checkpoint since the last commit
  bool last_is_checkpoint = false;
  bool checkpoint_missed = false;
  // False when the line cannot be hashed: the next record could not name it, so it is not written.
  auto append = [&](const std::string& line, bool is_checkpoint) {
    auto hash = audit_line_hash(line);
    if (!hash) {
      spdlog::error("audit record {} cannot be chained: {}", seq, hash.error());
      errno = ENOMEM;
      return false;
    }
    prev = std::move(*hash);
    buffer += line;
    buffer += '\n';
    ++uncommitted;
    last_is_checkpoint = is_checkpoint;
    if (is_checkpoint) newest_checkpoint = seq;
    return true;
  };
  // A checkpoint takes its place in the sequence: the Nth, 2Nth, … record, or now when asked.
  auto maybe_checkpoint = [&](bool now) {
    if (!signer_ || (!now && (checkpoint_every_ == 0 || (seq + 1) % checkpoint_every_ != 0))) return true;
    if (auto line = render_checkpoint(seq + 1, prev)) {
      ++seq;
      return append(*line, true);
    }
    if (now) checkpoint_missed = true;
    return true;
  };
  auto commit = [&] {
    std::lock_guard lock(mutex_);
    size_ += buffer.size();
    seq_ = seq;
    prev_ = prev;
    written_ += uncommitted;
    if (newest_checkpoint) {
      last_checkpoint_seq_ = newest_checkpoint;
      last_checkpoint_at_ = std::chrono::steady_clock::now();
    }
    if (last_is_checkpoint) uncovered_since_.reset();
    else if (uncommitted && (newest_checkpoint || !uncovered_since_)) uncovered_since_ = std::chrono::steady_clock::now();
    buffer.clear();
    uncommitted = 0;
    newest_checkpoint = 0;
  };
  // Writes the buffer (rotating first when it would pass the size limit) and commits it; with
  // `group` the sync comes first, once for the whole group.
  auto flush = [&]() -> bool {
    if (buffer.empty()) return true;
    if (max_bytes_ && size_ > 0 && size_ + buffer.size() > max_bytes_) rotate();  // on failure, grow the file
    if (!write_all(fd_, buffer.data(), buffer.size())) return false;
    if (durability_ != AuditDurability::none) {
      ScopedLatency timed(sync_durations_);
      if (::fdatasync(fd_) != 0) return false;
    }
    commit();
    return true;
  };
  bool ok = !checkpoint_first || maybe_checkpoint(true);
  for (const auto& p : group) {
    if (!ok) break;
    for (const auto& e : p.events) {
      if (!(ok = maybe_checkpoint(false) && append(render(e, ++seq, prev), false))) break;
      if (durability_ == AuditDurability::always && !(ok = flush())) break;
    }
  }
  if (ok) ok = flush();

  std::lock_guard lock(mutex_);
  // A checkpoint the signer refused is tried again one interval later, not in a busy loop.
  if (checkpoint_missed && uncovered_since_) uncovered_since_ = std::chrono::steady_clock::now();
  if (!ok) {
    const int err = errno;
    // Roll back to the last committed record so the chain on disk stays whole.
    if (::ftruncate(fd_, static_cast<off_t>(size_)) != 0) spdlog::error("cannot roll back the audit log: {}", std::strerror(errno));
    if (!failed_) spdlog::error("audit log {} is not writable ({}); refusing requests until it is", path_, std::strerror(err));
    failed_ = true;
    failed_at_ = std::chrono::steady_clock::now();
    return false;
  }
  if (failed_) spdlog::info("audit log {} is writable again", path_);
  failed_ = false;
  return true;
}

}  // namespace custody::core
