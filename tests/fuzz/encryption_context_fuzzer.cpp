// The encryption context (CONTRACT §3, §4) as the data-plane handlers read it: a request body
// parsed by parse_body, its "context" member by parse_context, then encode_context. Whatever is
// accepted encodes with pairs in strictly increasing byte order and the exact lengths, decodes
// back to the same pairs, and round-trips through JSON to the same bytes.
#include <boost/json.hpp>
#include <cstdint>
#include <string>

#include "daemon/core/crypto/encryption_context.h"
#include "daemon/service/json_body.h"
#include "tests/fuzz/fuzz_check.h"

using namespace custody;
using fuzz::check;

namespace {

constexpr unsigned kMaxDepth = 16;  // the daemon's default limits.max_json_depth

// CONTRACT §4, read back: u16be n || (u16be len || key || u16be len || value) * n.
core::EncryptionContext decode(const Bytes& bytes) {
  std::size_t at = 0;
  auto u16 = [&]() {
    check(at + 2 <= bytes.size(), "encoding is truncated");
    std::size_t v = static_cast<std::size_t>(bytes[at]) << 8 | bytes[at + 1];
    at += 2;
    return v;
  };
  auto text = [&](std::size_t n) {
    check(at + n <= bytes.size(), "encoding is truncated");
    std::string s(reinterpret_cast<const char*>(bytes.data() + at), n);
    at += n;
    return s;
  };
  core::EncryptionContext ctx;
  const std::size_t n = u16();
  std::string previous;
  for (std::size_t i = 0; i < n; ++i) {
    std::string k = text(u16());
    std::string v = text(u16());
    check(i == 0 || previous < k, "pairs are in strictly increasing key byte order");
    previous = k;
    ctx.emplace(std::move(k), std::move(v));
  }
  check(at == bytes.size(), "nothing follows the last pair");
  return ctx;
}

void round_trip(const boost::json::value* member) {
  auto ctx = core::parse_context(member);
  if (!ctx) {
    check(ctx.error().code == core::Code::invalid_argument, "a refused context is invalid_argument");
    return;
  }
  check(ctx->size() <= core::kMaxContextPairs, "at most 32 pairs");
  for (const auto& [k, v] : *ctx)
    check(!k.empty() && k.size() <= core::kMaxContextKey && v.size() <= core::kMaxContextValue, "pair sizes in bounds");
  const Bytes encoded = core::encode_context(*ctx);
  check(decode(encoded) == *ctx, "the encoding decodes to the same pairs");
  // The same pairs sent again (in any member order) give the same bytes.
  boost::json::object again;
  for (auto it = ctx->rbegin(); it != ctx->rend(); ++it) again[it->first] = it->second;
  auto body = service::parse_body(boost::json::serialize(boost::json::object{{"context", again}}), kMaxDepth);
  check(static_cast<bool>(body), "a serialized accepted context parses again");
  auto ctx2 = core::parse_context(body->if_contains("context"));
  check(ctx2 && *ctx2 == *ctx && core::encode_context(*ctx2) == encoded, "the context round-trips through JSON");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  // As a whole request body, as the handlers see it...
  if (auto body = service::parse_body(text, kMaxDepth)) round_trip(body->if_contains("context"));
  // ...and as the value of "context" itself.
  if (auto body = service::parse_body("{\"context\":" + text + "}", kMaxDepth)) round_trip(body->if_contains("context"));
  return 0;
}
