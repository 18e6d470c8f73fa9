#pragma once
// The append-only, hash-chained audit log (CONTRACT §9). Records are written by one thread in
// groups: every record submitted while the previous group was being written goes out in one
// write and (durability "group") one fdatasync; then every submitter is told. A write failure
// rolls the file back to the last good record and refuses service until a retry succeeds.
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
#include "common/secure_buffer.h"
#include "daemon/core/audit_event.h"
#include "daemon/core/clock.h"

namespace custody::core {

enum class AuditDurability { always, group, none };

class AuditLog {
 public:
  using Done = std::function<void(bool written)>;

  static Expected<std::unique_ptr<AuditLog>, std::string> open(const std::string& path, AuditDurability durability,
                                                               const Clock& clock);
  ~AuditLog();

  // Queues the events; done(true) once they are written (and synced as configured).
  void submit(std::vector<AuditEvent> events, Done done);
  // The same, waiting for the outcome.
  bool write(std::vector<AuditEvent> events);
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

  // Rotation by size: once the file would pass max_bytes, it is renamed to
  // "<path>.<seq of its last record, 12 digits>" and a new file continues the same chain, so
  // `custodyctl audit verify <path>.* <path>` checks them as one. 0: never rotate.
  void set_rotation(std::uint64_t max_bytes);

 private:
  struct Pending {
    std::vector<AuditEvent> events;
    Done done;
  };
  AuditLog(std::string path, int fd, AuditDurability durability, const Clock& clock, std::uint64_t seq,
           std::string prev, std::uint64_t size);
  void run();
  bool write_group(std::vector<Pending>& group);
  std::string render(const AuditEvent& e, std::uint64_t seq, const std::string& prev) const;
  // The checkpoint record for seq, or nullopt if the signer failed.
  std::optional<std::string> render_checkpoint(std::uint64_t seq, const std::string& prev) const;
  Signer signer_;
  std::uint64_t checkpoint_every_ = 0;
  Peer self_;
  bool checkpoint_now_ = false;
  std::uint64_t max_bytes_ = 0;
  bool rotate();

  const std::string path_;
  int fd_;  // replaced only by the writer thread, when it rotates the file
  const AuditDurability durability_;
  const Clock& clock_;

  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<Pending> queue_;
  bool stopping_ = false;
  bool failed_ = false;
  std::chrono::steady_clock::time_point failed_at_{};
  std::uint64_t seq_;     // of the newest written record
  std::string prev_;      // its hash
  std::uint64_t size_;    // bytes of good records in the file
  std::uint64_t written_ = 0;
  std::thread writer_;
};

std::string checkpoint_message(std::uint64_t seq, const std::string& prev);

// The hash a record's successor stores in "prev".
std::string audit_line_hash(const std::string& line);
inline const std::string kAuditGenesis(64, '0');

}  // namespace custody::core
