#pragma once
// Checks an audit log file: every line a record, seq counting up from the first, and every
// "prev" the SHA-256 of the line before it. Names the first record that breaks the chain.
#include <cstdint>
#include <istream>
#include <string>

namespace custody::core {

struct AuditVerification {
  bool ok = false;
  std::uint64_t records = 0;
  std::uint64_t first_bad_line = 0;  // 1-based line number; 0 when ok
  std::string problem;
  std::string head;  // hash of the last good record
};

AuditVerification verify_audit_log(std::istream& in);

}  // namespace custody::core
