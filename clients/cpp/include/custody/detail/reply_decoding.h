#pragma once
// The daemon's answers turned into custody::client's types, with no socket involved, so that unit
// tests and the fuzzer reach every decoder directly. Anything that is not what CONTRACT §3/§6
// promises is a bad_reply Error, never a crash, a default value or an unbounded allocation.
#include <boost/json.hpp>
#include <cstddef>
#include <string_view>
#include <vector>

#include "custody/client.h"

namespace custody::client::detail {

// Parses in memory that is wiped when released (the tree may hold plaintext base64). Bounded by
// the input (the transport bounds that) and by a nesting depth of 32.
Result<boost::json::value> parse_reply_json(std::string_view body);

// The Error a non-2xx reply stands for: the contract's {"error": {code, message}} when the body
// carries one, else a description from the status alone.
Error error_from_reply(int status, std::string_view body, std::string request_id,
                       std::optional<std::chrono::seconds> retry_after);

Result<Wrapped> decode_wrapped(const boost::json::value& v);
Result<Unwrapped> decode_unwrapped(const boost::json::value& v);
Result<DataKey> decode_datakey(const boost::json::value& v, bool plaintext_expected);
Result<DerivedKey> decode_derived(const boost::json::value& v, std::size_t length_expected);
Result<KeyInfo> decode_key_info(const boost::json::value& v);
Result<std::vector<KeyInfo>> decode_key_list(const boost::json::value& v);
Result<Health> decode_health(int status, std::string_view body);
// The envelope's fields (no check: see check_attestation).
Result<Attestation> decode_attestation(const boost::json::value& v);
// Fills signature_ok / nonce_ok / checked_with_pinned_key.
void check_attestation(Attestation& a, const std::optional<std::string>& pinned_public_key);

// {"batch": [...]} with exactly `expected` items, each a result or {"error": {code, message}}.
template <class T, class Decode>
BatchResult<T> decode_batch(const boost::json::value& v, std::size_t expected, Decode decode_item);

Error bad_reply(std::string message);
// A failed batch item: its code and message (http_status stays 200, the batch's own status).
Error batch_item_error(const boost::json::value& item);

template <class T, class Decode>
BatchResult<T> decode_batch(const boost::json::value& v, std::size_t expected, Decode decode_item) {
  const auto* o = v.if_object();
  const auto* items = o ? o->if_contains("batch") : nullptr;
  if (!items || !items->is_array()) return unexpected(bad_reply("the reply has no batch list"));
  const auto& list = items->get_array();
  if (list.size() != expected)
    return unexpected(bad_reply("the batch reply has " + std::to_string(list.size()) + " results for " +
                                std::to_string(expected) + " items"));
  std::vector<Result<T>> out;
  out.reserve(list.size());
  for (const auto& item : list) {
    const auto* io = item.if_object();
    if (io && io->contains("error")) {
      out.push_back(unexpected(batch_item_error(item)));
      continue;
    }
    out.push_back(decode_item(item));
  }
  return out;
}

}  // namespace custody::client::detail
