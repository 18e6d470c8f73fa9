#pragma once
// The append-only, hash-chained audit log (CONTRACT §9). Records are written by one thread in
// groups: every record submitted while the previous group was being written goes out in one
// write and (durability "group") one fdatasync; then every submitter is told. A write failure
// rolls the file back to the last good record and refuses service until a retry succeeds.
// Rotated files are kept within a count and size budget: the oldest go, but only once a signed
// checkpoint in a newer file vouches for the chain that continues from them.
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/expected.h"
#include "common/latency_histogram.h"
#include "common/secure_buffer.h"
#include "daemon/core/audit/audit_event.h"
#include "daemon/core/clock.h"

namespace custody::core {

enum class AuditDurability { always, group, none };

// Retention of rotated files (0: no limit) and the free-space alarm.
struct AuditRetention {
  std::uint64_t max_files = 0;        // counting the file being written
  std::uint64_t max_total_bytes = 0;  // all files together
  std::uint64_t min_free_bytes = 0;   // below this, health says degraded
};

// What the log occupies on disk, for health and metrics.
struct AuditStorage {
  std::uint64_t files = 0;  // the live file and the rotated ones kept
  std::uint64_t bytes = 0;
  std::optional<std::uint64_t> free_bytes;  // nullopt when the filesystem cannot be asked
  std::uint64_t min_free_bytes = 0;
  // Free space is under min_free_bytes (0: no alarm), or unknown: the disk may fill unnoticed.
  bool low_on_space() const { return min_free_bytes > 0 && (!free_bytes || *free_bytes < min_free_bytes); }
};

class AuditLog {
 public:
  using Done = std::function<void(bool written)>;

  static Expected<std::unique_ptr<AuditLog>, std::string> open(const std::string& path, AuditDurability durability,
                                                               const Clock& clock);
  ~AuditLog();

  // Queues the events; done(true) once they are written (and synced as configured). done runs
  // on the writer thread, or through the delivery hook when one is set.
  void submit(std::vector<AuditEvent> events, Done done);
  // The same, waiting for the outcome (never through the delivery hook: the caller may be the
  // thread the hook hands to).
  bool write(std::vector<AuditEvent> events);
  // Writes the events on the calling thread, when the writer is idle and nothing is queued: for
  // a lone request, two thread hand-overs fewer than submit(). nullopt when the writer was busy
  // (the caller submits instead); else whether they were written (and synced as configured).
  std::optional<bool> write_now(std::vector<AuditEvent>& events);
  // Hands every written group's submit() completions over in one call (e.g. one post to the
  // I/O thread per fdatasync instead of one per request). Set before the first submit.
  using Completions = std::vector<Done>;
  using Deliver = std::function<void(Completions completions, bool written)>;
  void set_delivery(Deliver deliver);
  // False while writes fail (fail closed). Becomes true again when a retry is due, so the log
  // recovers by itself when the disk does.
  bool accepting() const;
  std::uint64_t sequence() const;
  std::string head() const;  // hash of the newest record
  const std::string& path() const { return path_; }
  std::uint64_t records_written() const;
  // Writes what is queued and stops the writer thread.
  void stop();

  // Signed checkpoints (CONTRACT §9): every `every` records a record of type "checkpoint" whose
  // signature covers "custody.audit.checkpoint.v1\n<seq>\n<prev>\n". Set before the first write.
  using Signer = std::function<Expected<Bytes, std::string>(std::string_view message)>;
  void set_checkpoints(Signer signer, std::uint64_t every, Peer self);
  // Writes a checkpoint now (at shutdown); false if it could not be written.
  bool checkpoint();

  // Also by time: a checkpoint at most `interval` after the first record none covers, even when
  // no further record comes. 0: by count only.
  void set_checkpoint_interval(std::chrono::milliseconds interval);

  // Rotation by size: once the file would pass max_bytes, it is renamed to
  // "<path>.<seq of its last record, 12 digits>" and a new file continues the same chain, so
  // `custodyctl audit verify <path>.* <path>` checks them as one. 0: never rotate.
  void set_rotation(std::uint64_t max_bytes);
  // After a rotation or a checkpoint, the oldest rotated files are removed while the budget is
  // exceeded, each only when a checkpoint later in the chain covers its last record; an
  // "audit.retention" record naming the file and its seq range is written before it goes.
  void set_retention(AuditRetention retention);
  // The free bytes of the filesystem holding dir (statvfs by default); a seam for tests.
  using FreeSpaceProbe = std::function<Expected<std::uint64_t, std::string>(const std::string& dir)>;
  void set_free_space_probe(FreeSpaceProbe probe);
  AuditStorage storage() const;
  // Seq of the newest checkpoint written in this run or found at the end of the file; 0: none.
  std::uint64_t last_checkpoint_sequence() const;
  // For metrics: how long since the newest checkpoint was written (since the log was opened when
  // none has been written since), and how long each group's fdatasync took.
  std::chrono::steady_clock::duration since_last_checkpoint() const;
  const LatencyHistogram& sync_durations() const { return sync_durations_; }

 private:
  struct Pending {
    std::vector<AuditEvent> events;
    Done done;
    bool direct = false;  // done runs on the writer thread even with a delivery hook
  };
  // A rotated file still on disk, oldest first in rotated_.
  struct RotatedFile {
    std::string path;
    std::uint64_t first_seq = 0;
    std::uint64_t last_seq = 0;
    std::uint64_t bytes = 0;
  };
  using SteadyTime = std::chrono::steady_clock::time_point;

  // What open() found on disk.
  struct Found {
    std::uint64_t seq = 0;  // of the newest record
    std::string prev;       // its hash
    std::uint64_t size = 0;
    std::uint64_t first_seq = 1;  // of the live file's first record
    bool ends_with_checkpoint = false;
    std::vector<RotatedFile> rotated;
  };
  AuditLog(std::string path, int fd, AuditDurability durability, const Clock& clock, Found found);
  void run();
  void enqueue(Pending pending);
  // Tells the group's submitters the outcome: through deliver_ in one call, or one by one.
  void complete(std::vector<Pending>& group, bool written);
  // When the writer must write a checkpoint unasked (the mutex held); nullopt: not due.
  std::optional<SteadyTime> checkpoint_due() const;
  bool write_group(std::vector<Pending>& group, bool checkpoint_first);
  // write_group, with an exception (bad_alloc rendering, a throwing signer) taken as a failed
  // write: rolled back to the last committed record and the log failed (fail closed).
  bool write_group_or_fail(std::vector<Pending>& group, bool checkpoint_first);
  std::string render(const AuditEvent& e, std::uint64_t seq, const std::string& prev) const;
  // The checkpoint record for seq, or nullopt if the signer failed.
  std::optional<std::string> render_checkpoint(std::uint64_t seq, const std::string& prev) const;
  // Renames the live file after its last record (seq_) and opens a new one.
  bool rotate();
  // Removes the oldest rotated files the budget no longer has room for (writer thread only).
  void enforce_retention();
  Signer signer_;
  Deliver deliver_;
  std::uint64_t checkpoint_every_ = 0;
  std::chrono::milliseconds checkpoint_interval_{0};
  Peer self_;
  bool checkpoint_now_ = false;
  std::uint64_t max_bytes_ = 0;
  AuditRetention retention_;
  FreeSpaceProbe free_space_;
  std::string removal_failed_;  // a file unlink refused, not retried until the next rotation

  const std::string path_;
  int fd_;  // replaced only by the writer thread, when it rotates the file
  const AuditDurability durability_;
  const Clock& clock_;

  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<Pending> queue_;
  bool stopping_ = false;
  bool writing_ = false;  // a thread holds the writer's role: the writer thread or write_now()
  bool failed_ = false;
  std::chrono::steady_clock::time_point failed_at_{};
  std::uint64_t seq_;     // of the newest written record
  std::string prev_;      // its hash
  std::uint64_t size_;    // bytes of good records in the file
  std::uint64_t written_ = 0;
  std::uint64_t first_seq_;             // of the live file's first record (or the next one)
  std::vector<RotatedFile> rotated_;    // oldest first
  std::uint64_t last_checkpoint_seq_ = 0;
  std::optional<SteadyTime> uncovered_since_;  // first record written after the newest checkpoint
  SteadyTime last_checkpoint_at_ = std::chrono::steady_clock::now();
  LatencyHistogram sync_durations_;
  std::thread writer_;
};

std::string checkpoint_message(std::uint64_t seq, const std::string& prev);

// The hash a record's successor stores in "prev"; an error only when OpenSSL fails.
Expected<std::string, std::string> audit_line_hash(const std::string& line);
inline const std::string kAuditGenesis(64, '0');

}  // namespace custody::core
