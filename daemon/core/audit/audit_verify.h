#pragma once
// Checks an audit log: every line a record, seq counting up by one, every "prev" the SHA-256 of
// the line before it, and, given the attestation public key, every checkpoint's signature over
// "custody.audit.checkpoint.v1\n<seq>\n<prev>\n". Names the first record that breaks any of it.
// Several files (a rotated log, oldest first) are checked as one chain. The chain may start after
// seq 1 (retention removed the oldest files): it is then checked from its first record's prev,
// which only a later signed checkpoint vouches for.
//
// What the chain alone cannot see: records cut off the end of the log (the shorter log is a valid
// chain) and a log rewritten from its start with a recomputed chain. The checkpoint signatures
// catch the second up to the last checkpoint; comparing the end of the log with a sequence the
// daemon attested (or one pinned earlier) catches the first: see AuditExpectation.
#include <openssl/evp.h>

#include <boost/json/object.hpp>
#include <cstdint>
#include <istream>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/expected.h"

namespace custody::core {

// The chain checked one line at a time, for a whole file or for a log being followed.
class AuditChainVerifier {
 public:
  // key: the attestation public key that signs checkpoints; null to check the chain alone.
  explicit AuditChainVerifier(std::shared_ptr<EVP_PKEY> key = nullptr) : key_(std::move(key)) {}

  // Checks the next record (one line without its newline) and returns it parsed, or the problem;
  // after a problem nothing changes, the chain still ends at the last good record.
  Expected<boost::json::object, std::string> add(std::string_view line);

  std::uint64_t records() const { return records_; }
  std::uint64_t checkpoints() const { return checkpoints_; }  // whose signature was checked
  std::uint64_t after_last_checkpoint() const { return after_last_checkpoint_; }
  std::uint64_t first_seq() const { return first_seq_; }  // 0 until the first record
  std::uint64_t last_seq() const { return next_seq_ == 0 ? 0 : next_seq_ - 1; }
  std::uint64_t next_seq() const { return next_seq_; }  // 0 until the first record
  const std::string& head() const { return prev_; }     // hash of the last good record
  bool started_mid_chain() const { return first_seq_ > 1; }

 private:
  std::shared_ptr<EVP_PKEY> key_;
  std::string prev_;
  std::uint64_t next_seq_ = 0;
  std::uint64_t records_ = 0, checkpoints_ = 0, after_last_checkpoint_ = 0, first_seq_ = 0;
};

// Where the log must reach: a sequence the daemon attested (with the hash of that record) or one
// pinned by the caller. A log that ends before it lost its tail.
struct AuditExpectation {
  std::uint64_t sequence = 0;
  std::optional<std::string> head;  // hex SHA-256 of the record at `sequence`, when known
  std::string source;               // for messages: "the attestation", "--expect-seq"
};

struct AuditVerification {
  bool ok = false;
  std::uint64_t records = 0;
  std::uint64_t checkpoints = 0;         // checkpoints whose signature was checked
  std::uint64_t after_last_checkpoint = 0;  // records no signature covers yet
  std::uint64_t first_bad_line = 0;      // 1-based line number across the files; 0 when ok
  std::uint64_t first_bad_seq = 0;       // the seq that record should have had
  std::string problem;
  std::string head;  // hash of the last good record
  bool started_mid_chain = false;        // the first record was not seq 1
  std::uint64_t first_seq = 0;           // seq of the first record; 0 when there is none
  std::uint64_t last_seq = 0;            // seq of the last good record; 0 when there is none
  bool truncated = false;                // the log ends before an expectation's sequence
};

// public_key_pem: the attestation key; empty to check the chain alone. Each expectation is
// checked too: the log must reach its sequence, and the record there must hash to its head.
AuditVerification verify_audit_log(const std::vector<std::istream*>& files, const std::string& public_key_pem,
                                   const std::vector<AuditExpectation>& expectations = {});
inline AuditVerification verify_audit_log(std::istream& in, const std::string& public_key_pem = {}) {
  return verify_audit_log(std::vector<std::istream*>{&in}, public_key_pem);
}

}  // namespace custody::core
