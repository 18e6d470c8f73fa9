#include "daemon/core/audit/audit_verify.h"

#include <boost/json.hpp>
#include <map>

#include "common/base64.h"
#include "common/pem.h"
#include "daemon/core/audit/audit_log.h"

namespace custody::core {

Expected<boost::json::object, std::string> AuditChainVerifier::add(std::string_view line) {
  boost::system::error_code ec;
  auto v = boost::json::parse(line, ec);
  if (ec || !v.is_object()) return unexpected(std::string("not a JSON object"));
  auto& o = v.as_object();
  const auto* seq = o.if_contains("seq");
  if (!seq || !seq->is_int64() || seq->as_int64() < 1) return unexpected(std::string("no seq"));
  const auto* p = o.if_contains("prev");
  if (!p || !p->is_string()) return unexpected(std::string("no prev"));
  const auto got = static_cast<std::uint64_t>(seq->as_int64());
  // The first record: seq 1 starts from the genesis hash; a later one (a rotated-away beginning)
  // is taken as the anchor.
  const bool first = next_seq_ == 0;
  const std::uint64_t expected = first ? got : next_seq_;
  const std::string prev = first ? (got == 1 ? kAuditGenesis : std::string(p->as_string())) : prev_;
  if (got != expected)
    return unexpected("seq is " + std::to_string(got) + ", expected " + std::to_string(expected) +
                      " (a record was removed, added or reordered)");
  if (p->as_string() != prev)
    return unexpected(std::string("prev does not match the hash of the previous record (a record was changed, removed or reordered)"));
  for (const char* field : {"time", "type", "request_id", "client", "result"})
    if (!o.contains(field)) return unexpected(std::string("missing field ") + field);
  bool signed_checkpoint = false;
  if (o.at("type") == "checkpoint") {
    const auto* sig = o.if_contains("signature");
    if (!sig || !sig->is_string()) return unexpected(std::string("a checkpoint without a signature"));
    if (key_) {
      auto signature = base64_decode(std::string_view(sig->as_string()));
      if (!signature || !verify_sha256_signature(key_.get(), checkpoint_message(expected, prev), *signature))
        return unexpected(std::string("the checkpoint's signature does not verify with the given public key"));
      signed_checkpoint = true;
    }
  }
  auto hash = audit_line_hash(std::string(line));
  if (!hash) return unexpected("cannot hash the record: " + hash.error());
  if (first) first_seq_ = got;
  if (signed_checkpoint) {
    ++checkpoints_;
    after_last_checkpoint_ = 0;
  } else if (o.at("type") != "checkpoint") {
    ++after_last_checkpoint_;
  }
  prev_ = std::move(*hash);
  next_seq_ = expected + 1;
  ++records_;
  return std::move(o);
}

AuditVerification verify_audit_log(const std::vector<std::istream*>& files, const std::string& public_key_pem,
                                   const std::vector<AuditExpectation>& expectations) {
  AuditVerification r;
  std::shared_ptr<EVP_PKEY> key;
  if (!public_key_pem.empty()) {
    key = read_public_key_pem(public_key_pem);
    if (!key) {
      r.problem = "the public key is not a PEM public key";
      return r;
    }
  }
  AuditChainVerifier chain(key);
  // The hashes the expectations name, taken as their records go by.
  std::map<std::uint64_t, std::string> seen;
  std::uint64_t line_no = 0;
  auto fill = [&] {
    r.records = chain.records();
    r.checkpoints = chain.checkpoints();
    r.after_last_checkpoint = chain.after_last_checkpoint();
    r.head = chain.head();
    r.started_mid_chain = chain.started_mid_chain();
    r.first_seq = chain.first_seq();
    r.last_seq = chain.last_seq();
  };
  auto bad = [&](std::string problem) {
    fill();
    r.ok = false;
    r.first_bad_line = line_no;
    r.first_bad_seq = chain.next_seq() == 0 ? 1 : chain.next_seq();
    r.problem = std::move(problem);
    return r;
  };
  for (std::istream* in : files) {
    std::string line;
    while (std::getline(*in, line)) {
      ++line_no;
      if (in->eof()) return bad("the record does not end with a newline (truncated)");
      auto record = chain.add(line);
      if (!record) return bad(record.error());
      for (const auto& e : expectations)
        if (e.sequence == chain.last_seq()) seen[e.sequence] = chain.head();
    }
  }
  fill();
  for (const auto& e : expectations) {
    if (chain.last_seq() < e.sequence) {
      ++line_no;
      r = bad("the log ends at seq " + std::to_string(chain.last_seq()) + " but " + e.source + " says seq " +
              std::to_string(e.sequence) + " was written: records were cut off the end (truncated)");
      r.truncated = true;
      return r;
    }
    auto at = seen.find(e.sequence);
    if (e.head && at != seen.end() && at->second != *e.head)
      return bad("the record at seq " + std::to_string(e.sequence) + " is not the one " + e.source +
                 " names (its hash differs from the attested head)");
    if (e.head && at == seen.end() && chain.first_seq() > e.sequence)
      return bad("the log starts at seq " + std::to_string(chain.first_seq()) + ", after seq " +
                 std::to_string(e.sequence) + " that " + e.source + " names: give the older files too");
  }
  r.ok = true;
  return r;
}

}  // namespace custody::core
