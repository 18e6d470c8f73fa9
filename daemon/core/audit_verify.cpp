#include "daemon/core/audit_verify.h"

#include <boost/json.hpp>

#include "daemon/core/audit_log.h"

namespace custody::core {

AuditVerification verify_audit_log(std::istream& in) {
  AuditVerification r;
  std::string prev = kAuditGenesis;
  std::string line;
  std::uint64_t line_no = 0;
  std::uint64_t expected_seq = 1;
  auto bad = [&](std::string problem) {
    r.ok = false;
    r.first_bad_line = line_no;
    r.problem = std::move(problem);
    r.head = prev;
    return r;
  };
  while (std::getline(in, line)) {
    ++line_no;
    if (in.eof()) return bad("the record does not end with a newline (truncated)");
    boost::system::error_code ec;
    auto v = boost::json::parse(line, ec);
    if (ec || !v.is_object()) return bad("not a JSON object");
    const auto& o = v.as_object();
    const auto* seq = o.if_contains("seq");
    if (!seq || !seq->is_int64()) return bad("no seq");
    if (static_cast<std::uint64_t>(seq->as_int64()) != expected_seq)
      return bad("seq is " + std::to_string(seq->as_int64()) + ", expected " + std::to_string(expected_seq));
    const auto* p = o.if_contains("prev");
    if (!p || !p->is_string() || p->as_string() != prev)
      return bad("prev does not match the hash of the previous record (a record was changed, removed or reordered)");
    for (const char* field : {"time", "type", "request_id", "client", "result"})
      if (!o.contains(field)) return bad(std::string("missing field ") + field);
    prev = audit_line_hash(line);
    ++expected_seq;
    ++r.records;
  }
  r.ok = true;
  r.head = prev;
  return r;
}

}  // namespace custody::core
