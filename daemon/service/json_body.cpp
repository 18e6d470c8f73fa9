#include "daemon/service/json_body.h"

#include <openssl/crypto.h>

#include <cstdlib>
#include <new>

#include "common/base64.h"

namespace custody::service {
namespace {

// malloc's alignment covers everything Boost.JSON allocates (at most alignof(max_align_t)).
class ZeroizingResource final : public boost::json::memory_resource {
  void* do_allocate(std::size_t n, std::size_t) override {
    void* p = std::malloc(n ? n : 1);
    if (!p) throw std::bad_alloc();
    return p;
  }
  void do_deallocate(void* p, std::size_t n, std::size_t) override {
    OPENSSL_cleanse(p, n);
    std::free(p);
  }
  bool do_is_equal(const memory_resource& other) const noexcept override { return this == &other; }
};

}  // namespace

boost::json::storage_ptr zeroizing_storage() {
  static ZeroizingResource resource;
  return boost::json::storage_ptr(&resource);
}

boost::json::string secret_base64(std::span<const std::uint8_t> data) {
  boost::json::string s(zeroizing_storage());
  s.resize(base64_encoded_size(data.size()));
  base64_encode_into(data, s.data());
  return s;
}

core::Outcome<boost::json::object> parse_body(std::string_view body, unsigned max_depth) {
  boost::json::parse_options options;
  options.max_depth = max_depth;
  boost::system::error_code ec;
  boost::json::value v = boost::json::parse(body, ec, zeroizing_storage(), options);
  if (ec) {
    if (ec == boost::json::error::too_deep)
      return core::fail(core::Code::invalid_argument, "the JSON body nests deeper than " + std::to_string(max_depth));
    return core::fail(core::Code::invalid_argument, "the body is not valid JSON: " + ec.message());
  }
  if (!v.is_object()) return core::fail(core::Code::invalid_argument, "the body must be a JSON object");
  return std::move(v.as_object());
}

core::Outcome<void> Fields::only(std::initializer_list<std::string_view> allowed) const {
  for (const auto& [k, v] : object_) {
    bool known = false;
    for (auto a : allowed) known = known || a == std::string_view(k);
    if (!known) return core::fail(core::Code::invalid_argument, "unknown field '" + name_of(k) + "'");
  }
  return {};
}

core::Outcome<SecureBytes> Fields::base64(std::string_view name, std::size_t min, std::size_t max, bool required) const {
  const auto* v = get(name);
  if (!v || v->is_null()) {
    if (required) return core::fail(core::Code::invalid_argument, "'" + name_of(name) + "' is required");
    return SecureBytes{};
  }
  if (!v->is_string()) return core::fail(core::Code::invalid_argument, "'" + name_of(name) + "' must be a base64 string");
  const auto& s = v->as_string();
  // Reject before decoding anything absurdly long.
  if (s.size() > (max + 2) / 3 * 4)
    return core::fail(core::Code::invalid_argument, "'" + name_of(name) + "' must be " + std::to_string(min) + ".." +
                                                        std::to_string(max) + " bytes");
  auto bytes = base64_decode(std::string_view(s.data(), s.size()));
  if (!bytes) return core::fail(core::Code::invalid_argument, "'" + name_of(name) + "' is not valid base64 (standard alphabet, with padding)");
  if (bytes->size() < min || bytes->size() > max)
    return core::fail(core::Code::invalid_argument, "'" + name_of(name) + "' must be " + std::to_string(min) + ".." +
                                                        std::to_string(max) + " bytes");
  return std::move(*bytes);
}

core::Outcome<std::optional<std::uint64_t>> Fields::number(std::string_view name, std::uint64_t min, std::uint64_t max) const {
  const auto* v = get(name);
  if (!v || v->is_null()) return std::optional<std::uint64_t>{};
  std::optional<std::uint64_t> n;
  if (v->is_int64() && v->as_int64() >= 0) n = static_cast<std::uint64_t>(v->as_int64());
  else if (v->is_uint64()) n = v->as_uint64();
  if (!n || *n < min || *n > max)
    return core::fail(core::Code::invalid_argument, "'" + name_of(name) + "' must be a whole number from " +
                                                        std::to_string(min) + " to " + std::to_string(max));
  return n;
}

core::Outcome<bool> Fields::boolean(std::string_view name, bool fallback) const {
  const auto* v = get(name);
  if (!v || v->is_null()) return fallback;
  if (!v->is_bool()) return core::fail(core::Code::invalid_argument, "'" + name_of(name) + "' must be true or false");
  return v->as_bool();
}

core::Outcome<std::string> Fields::string(std::string_view name) const {
  const auto* v = get(name);
  if (!v || !v->is_string() || v->as_string().empty())
    return core::fail(core::Code::invalid_argument, "'" + name_of(name) + "' must be a non-empty string");
  return std::string(v->as_string());
}

}  // namespace custody::service
