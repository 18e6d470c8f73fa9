#include "daemon/core/audit/audit_verify.h"

#include <boost/json.hpp>
#include <memory>

#include "common/base64.h"
#include "common/pem.h"
#include "daemon/core/audit/audit_log.h"

namespace custody::core {
AuditVerification verify_audit_log(const std::vector<std::istream*>& files, const std::string& public_key_pem) {
  AuditVerification r;
  std::shared_ptr<EVP_PKEY> key;
  if (!public_key_pem.empty()) {
    key = read_public_key_pem(public_key_pem);
    if (!key) {
      r.problem = "the public key is not a PEM public key";
      return r;
    }
  }
  std::string prev;
  std::uint64_t line_no = 0;
  std::uint64_t expected_seq = 0;  // 0: not known until the first record
  auto bad = [&](std::string problem) {
    r.ok = false;
    r.first_bad_line = line_no;
    r.first_bad_seq = expected_seq;
    r.problem = std::move(problem);
    r.head = prev;
    return r;
  };
  for (std::istream* in : files) {
    std::string line;
    while (std::getline(*in, line)) {
      ++line_no;
      if (in->eof()) return bad("the record does not end with a newline (truncated)");
      boost::system::error_code ec;
      auto v = boost::json::parse(line, ec);
      if (ec || !v.is_object()) return bad("not a JSON object");
      const auto& o = v.as_object();
      const auto* seq = o.if_contains("seq");
      if (!seq || !seq->is_int64() || seq->as_int64() < 1) return bad("no seq");
      const auto* p = o.if_contains("prev");
      if (!p || !p->is_string()) return bad("no prev");
      if (expected_seq == 0) {
        // The first record: seq 1 starts from the genesis hash; a later one (a rotated-away
        // beginning) is taken as the anchor.
        expected_seq = static_cast<std::uint64_t>(seq->as_int64());
        prev = expected_seq == 1 ? kAuditGenesis : std::string(p->as_string());
        r.started_mid_chain = expected_seq != 1;
        r.first_seq = expected_seq;
      }
      if (static_cast<std::uint64_t>(seq->as_int64()) != expected_seq)
        return bad("seq is " + std::to_string(seq->as_int64()) + ", expected " + std::to_string(expected_seq) +
                   " (a record was removed, added or reordered)");
      if (p->as_string() != prev)
        return bad("prev does not match the hash of the previous record (a record was changed, removed or reordered)");
      for (const char* field : {"time", "type", "request_id", "client", "result"})
        if (!o.contains(field)) return bad(std::string("missing field ") + field);
      if (o.at("type") == "checkpoint") {
        const auto* sig = o.if_contains("signature");
        if (!sig || !sig->is_string()) return bad("a checkpoint without a signature");
        if (key) {
          auto signature = base64_decode(std::string_view(sig->as_string()));
          if (!signature || !verify_sha256_signature(key.get(), checkpoint_message(expected_seq, prev), *signature))
            return bad("the checkpoint's signature does not verify with the given public key");
          ++r.checkpoints;
          r.after_last_checkpoint = 0;
        }
      } else {
        ++r.after_last_checkpoint;
      }
      prev = audit_line_hash(line);
      ++expected_seq;
      ++r.records;
    }
  }
  r.ok = true;
  r.head = prev;
  return r;
}

}  // namespace custody::core
