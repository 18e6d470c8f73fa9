#pragma once
// Checks an audit log: every line a record, seq counting up by one, every "prev" the SHA-256 of
// the line before it, and, given the attestation public key, every checkpoint's signature over
// "custody.audit.checkpoint.v1\n<seq>\n<prev>\n". Names the first record that breaks any of it.
// Several files (a rotated log, oldest first) are checked as one chain. The chain may start after
// seq 1 (retention removed the oldest files): it is then checked from its first record's prev,
// which only a later signed checkpoint vouches for.
#include <cstdint>
#include <istream>
#include <optional>
#include <string>
#include <vector>

namespace custody::core {

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
};

// public_key_pem: the attestation key; empty to check the chain alone.
AuditVerification verify_audit_log(const std::vector<std::istream*>& files, const std::string& public_key_pem);
inline AuditVerification verify_audit_log(std::istream& in, const std::string& public_key_pem = {}) {
  return verify_audit_log(std::vector<std::istream*>{&in}, public_key_pem);
}

}  // namespace custody::core
