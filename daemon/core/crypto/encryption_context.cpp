#include "daemon/core/crypto/encryption_context.h"

#include <boost/json.hpp>

namespace custody::core {
namespace {
void put_u16(Bytes& out, std::size_t v) {
  out.push_back(static_cast<std::uint8_t>(v >> 8));
  out.push_back(static_cast<std::uint8_t>(v & 0xff));
}
}  // namespace

Outcome<EncryptionContext> parse_context(const boost::json::value* v) {
  EncryptionContext ctx;
  if (!v || v->is_null()) return ctx;
  if (!v->is_object()) return fail(Code::invalid_argument, "context must be an object of string values");
  const auto& o = v->as_object();
  if (o.size() > kMaxContextPairs)
    return fail(Code::invalid_argument, "context has more than " + std::to_string(kMaxContextPairs) + " pairs");
  for (const auto& [k, val] : o) {
    if (k.empty() || k.size() > kMaxContextKey)
      return fail(Code::invalid_argument, "context keys must be 1.." + std::to_string(kMaxContextKey) + " bytes");
    if (!val.is_string()) return fail(Code::invalid_argument, "context values must be strings");
    if (val.as_string().size() > kMaxContextValue)
      return fail(Code::invalid_argument, "context values must be at most " + std::to_string(kMaxContextValue) + " bytes");
    // No duplicates can reach here: a JSON object holds each key once, and the request parser
    // refuses a body that repeats one (service::parse_body) before the object collapses them.
    ctx.emplace(std::string(k), std::string(val.as_string()));
  }
  return ctx;
}

Bytes encode_context(const EncryptionContext& ctx) {
  Bytes out;
  put_u16(out, ctx.size());
  for (const auto& [k, v] : ctx) {
    put_u16(out, k.size());
    out.insert(out.end(), k.begin(), k.end());
    put_u16(out, v.size());
    out.insert(out.end(), v.begin(), v.end());
  }
  return out;
}

}  // namespace custody::core
