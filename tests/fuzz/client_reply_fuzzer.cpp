// custody::client on arbitrary daemon replies: the HTTP parser under the client's limits, fed in
// chunks of any size, then every decoder on the body. Nothing may crash, read out of bounds or
// grow past the limits; whatever a decoder accepts must be what the contract promises.
#include <cstdint>
#include <string_view>

#include "common/base64.h"
#include "custody/detail/reply_decoding.h"
#include "custody/detail/reply_parsing.h"
#include "tests/fuzz/fuzz_check.h"

using namespace custody;
using namespace custody::client;
using fuzz::check;

namespace {

bool is_daemon_code(ErrorCode c) { return c <= ErrorCode::unknown_daemon_error; }

void check_wrapped(const Result<Wrapped>& w) {
  if (!w) return check(w.error().code == ErrorCode::bad_reply, "a refused result is bad_reply");
  check(!w->ciphertext.empty() && base64_decode(w->ciphertext).has_value(), "an accepted ciphertext is base64");
  check(w->key_version > 0, "an accepted key_version is positive");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  const std::size_t chunk = data[0];  // 0: the whole reply at once
  const int status = 200 + data[1] % 4 * 100;
  const std::string_view bytes(reinterpret_cast<const char*>(data + 2), size - 2);
  TransportLimits limits;
  limits.max_header_bytes = 2048;
  limits.max_body_bytes = 4096;

  auto reply = detail::parse_reply_bytes(bytes, limits, chunk);
  if (reply) {
    check(reply->body.size() <= limits.max_body_bytes, "a body over the limit was accepted");
    check(reply->status >= 0 && reply->status <= 999, "the status is a 3-digit number");
    if (reply->retry_after) check(reply->retry_after->count() <= 3600, "Retry-After is capped");
  } else {
    check(reply.error().code == ErrorCode::bad_reply, "a refused reply is bad_reply");
  }
  // The decoders also see the raw input as a body: most of what the fuzzer makes is not HTTP.
  const std::string_view body = reply ? reply->body.view() : bytes;

  const Error e = detail::error_from_reply(status, body, "rid", std::nullopt);
  check(e.http_status == status && is_daemon_code(e.code), "an error reply carries its status and a daemon code");
  check(e.body.size() <= 4096, "the kept error body is bounded");

  auto v = detail::parse_reply_json(body);
  if (v) {
    check_wrapped(detail::decode_wrapped(*v));
    if (auto u = detail::decode_unwrapped(*v)) check(u->key_version > 0, "unwrap: key_version");
    if (auto dk = detail::decode_datakey(*v, true)) check(!dk->plaintext.empty() && dk->key_version > 0, "datakey");
    (void)detail::decode_datakey(*v, false);
    if (auto k = detail::decode_derived(*v, 32)) check(k->key.size() == 32, "derive: the asked length");
    (void)detail::decode_derived(*v, 0);
    if (auto keys = detail::decode_key_list(*v))
      check(keys->size() <= body.size(), "no more keys than bytes");
    (void)detail::decode_key_info(*v);
    if (auto a = detail::decode_attestation(*v)) {
      a->nonce = "AAAA";
      detail::check_attestation(*a, std::nullopt);
    }
    for (std::size_t n : {std::size_t{1}, std::size_t{3}}) {
      auto batch = detail::decode_batch<Wrapped>(*v, n, detail::decode_wrapped);
      if (!batch) continue;
      check(batch->size() == n, "a batch has as many results as items");
      for (const auto& item : *batch) {
        if (item) check_wrapped(item);
        else check(is_daemon_code(item.error().code) || item.error().code == ErrorCode::bad_reply, "a batch item's error");
      }
    }
  }
  if (auto h = detail::decode_health(status, body)) check(h->http_status == status, "health keeps the status");
  return 0;
}
