#include "custody/detail/reply_decoding.h"

#include <openssl/crypto.h>

#include <limits>
#include <new>

#include "common/base64.h"
#include "common/pem.h"

namespace custody::client::detail {

namespace json = boost::json;

namespace {

// A JSON tree whose strings may be plaintext base64: wiped when released.
class WipingResource final : public json::memory_resource {
  // The aligned forms only where needed: the plain ones pair up on every compiler and sanitizer.
  void* do_allocate(std::size_t n, std::size_t align) override {
    if (align <= __STDCPP_DEFAULT_NEW_ALIGNMENT__) return ::operator new(n);
    return ::operator new(n, std::align_val_t(align));
  }
  void do_deallocate(void* p, std::size_t n, std::size_t align) override {
    OPENSSL_cleanse(p, n);
    if (align <= __STDCPP_DEFAULT_NEW_ALIGNMENT__) ::operator delete(p);
    else ::operator delete(p, std::align_val_t(align));
  }
  bool do_is_equal(const json::memory_resource& other) const noexcept override { return this == &other; }
};

WipingResource& wiping_resource() {
  static WipingResource resource;
  return resource;
}

const json::value* field(const json::value& v, std::string_view name) {
  const auto* o = v.if_object();
  return o ? o->if_contains(name) : nullptr;
}

std::optional<std::string> string_field(const json::value& v, std::string_view name) {
  const auto* f = field(v, name);
  if (!f || !f->is_string()) return std::nullopt;
  return std::string(f->get_string());
}

std::optional<std::uint32_t> u32_field(const json::value& v, std::string_view name) {
  const auto* f = field(v, name);
  if (!f) return std::nullopt;
  if (f->is_uint64() && f->get_uint64() <= std::numeric_limits<std::uint32_t>::max())
    return static_cast<std::uint32_t>(f->get_uint64());
  if (f->is_int64() && f->get_int64() >= 0 && f->get_int64() <= std::numeric_limits<std::uint32_t>::max())
    return static_cast<std::uint32_t>(f->get_int64());
  return std::nullopt;
}

std::optional<bool> bool_field(const json::value& v, std::string_view name) {
  const auto* f = field(v, name);
  if (!f || !f->is_bool()) return std::nullopt;
  return f->get_bool();
}

std::optional<SecureBytes> base64_field(const json::value& v, std::string_view name) {
  const auto* f = field(v, name);
  if (!f || !f->is_string()) return std::nullopt;
  return base64_decode(std::string_view(f->get_string()));
}

Result<std::uint32_t> key_version(const json::value& v) {
  auto version = u32_field(v, "key_version");
  if (!version || *version == 0) return unexpected(bad_reply("the reply has no valid key_version"));
  return *version;
}

// A ciphertext the daemon returns must be base64 of something (it is stored and sent back as is).
Result<std::string> ciphertext_field(const json::value& v) {
  auto text = string_field(v, "ciphertext");
  if (!text || text->empty() || !base64_decode(*text)) return unexpected(bad_reply("the reply has no base64 ciphertext"));
  return *text;
}

}  // namespace

Error bad_reply(std::string message) {
  Error e;
  e.code = ErrorCode::bad_reply;
  e.message = std::move(message);
  return e;
}

Result<json::value> parse_reply_json(std::string_view body) {
  json::parse_options options;
  options.max_depth = 32;
  boost::system::error_code ec;
  json::value v = json::parse(body, ec, json::storage_ptr(&wiping_resource()), options);
  if (ec) return unexpected(bad_reply("the reply is not JSON: " + ec.message()));
  return v;
}

Error batch_item_error(const json::value& item) {
  Error e;
  const auto* error = field(item, "error");
  auto code = error ? string_field(*error, "code") : std::nullopt;
  auto message = error ? string_field(*error, "message") : std::nullopt;
  if (!code) return bad_reply("a batch item's error has no code");
  e.code = daemon_error_code(*code);
  e.message = message.value_or("");
  e.http_status = 200;
  e.body = json::serialize(item);
  return e;
}

Error error_from_reply(int status, std::string_view body, std::string request_id,
                       std::optional<std::chrono::seconds> retry_after) {
  Error e;
  e.http_status = status;
  e.request_id = std::move(request_id);
  e.retry_after = retry_after;
  // An error body holds no key material (CONTRACT §1); a bounded copy is kept for diagnostics.
  e.body = std::string(body.substr(0, 4096));
  std::optional<std::string> code, message;
  if (auto v = parse_reply_json(body)) {
    if (const auto* error = field(*v, "error")) {
      code = string_field(*error, "code");
      message = string_field(*error, "message");
    }
  }
  if (code) {
    e.code = daemon_error_code(*code);
    e.message = message.value_or("");
    if (e.code == ErrorCode::unknown_daemon_error) e.message = *code + ": " + e.message;
    return e;
  }
  // No contract error body (a proxy, an old daemon, a bug): the status says what it can.
  switch (status) {
    case 400: e.code = ErrorCode::invalid_argument; break;
    case 403: e.code = ErrorCode::permission_denied; break;
    case 404: e.code = ErrorCode::not_found; break;
    case 405: e.code = ErrorCode::method_not_allowed; break;
    case 409: e.code = ErrorCode::failed_precondition; break;
    case 413: e.code = ErrorCode::payload_too_large; break;
    case 429: e.code = ErrorCode::resource_exhausted; break;
    case 502: e.code = ErrorCode::token_error; break;
    case 503: e.code = ErrorCode::unavailable; break;
    default: e.code = ErrorCode::unknown_daemon_error; break;
  }
  e.message = "HTTP " + std::to_string(status) + " without an error body";
  return e;
}

Result<Wrapped> decode_wrapped(const json::value& v) {
  auto ciphertext = ciphertext_field(v);
  if (!ciphertext) return unexpected(ciphertext.error());
  auto version = key_version(v);
  if (!version) return unexpected(version.error());
  return Wrapped{std::move(*ciphertext), *version};
}

Result<Unwrapped> decode_unwrapped(const json::value& v) {
  auto plaintext = base64_field(v, "plaintext");
  if (!plaintext) return unexpected(bad_reply("the reply has no base64 plaintext"));
  auto version = key_version(v);
  if (!version) return unexpected(version.error());
  return Unwrapped{std::move(*plaintext), *version};
}

Result<DataKey> decode_datakey(const json::value& v, bool plaintext_expected) {
  DataKey dk;
  if (plaintext_expected) {
    auto plaintext = base64_field(v, "plaintext");
    if (!plaintext || plaintext->empty()) return unexpected(bad_reply("the reply has no base64 plaintext data key"));
    dk.plaintext = std::move(*plaintext);
  }
  auto ciphertext = ciphertext_field(v);
  if (!ciphertext) return unexpected(ciphertext.error());
  auto version = key_version(v);
  if (!version) return unexpected(version.error());
  dk.ciphertext = std::move(*ciphertext);
  dk.key_version = *version;
  return dk;
}

Result<DerivedKey> decode_derived(const json::value& v, std::size_t length_expected) {
  auto key = base64_field(v, "key");
  if (!key) return unexpected(bad_reply("the reply has no base64 key"));
  if (length_expected != 0 && key->size() != length_expected)
    return unexpected(bad_reply("the derived key has " + std::to_string(key->size()) + " bytes, not " +
                                std::to_string(length_expected)));
  auto version = key_version(v);
  if (!version) return unexpected(version.error());
  return DerivedKey{std::move(*key), *version};
}

Result<KeyInfo> decode_key_info(const json::value& v) {
  KeyInfo k;
  auto name = string_field(v, "name");
  auto algorithm = string_field(v, "algorithm");
  auto state = string_field(v, "state");
  auto current = u32_field(v, "current_version");
  if (!name || !algorithm || !state || !current)
    return unexpected(bad_reply("a key in the reply lacks name, algorithm, state or current_version"));
  k.name = std::move(*name);
  k.algorithm = std::move(*algorithm);
  k.state = std::move(*state);
  k.current_version = *current;
  k.min_decrypt_version = u32_field(v, "min_decrypt_version").value_or(0);
  if (const auto* versions = field(v, "versions")) {
    if (!versions->is_array()) return unexpected(bad_reply("a key's versions are not a list"));
    for (const auto& item : versions->get_array()) {
      KeyVersionInfo info;
      auto number = u32_field(item, "version");
      if (!number) return unexpected(bad_reply("a key version has no number"));
      info.version = *number;
      info.state = string_field(item, "state").value_or("");
      info.origin = string_field(item, "origin").value_or("");
      info.created_at = string_field(item, "created_at").value_or("");
      info.kcv = string_field(item, "kcv");
      k.versions.push_back(std::move(info));
    }
  }
  if (const auto* policy = field(v, "policy")) k.policy_json = json::serialize(*policy);
  return k;
}

Result<std::vector<KeyInfo>> decode_key_list(const json::value& v) {
  const auto* keys = field(v, "keys");
  if (!keys || !keys->is_array()) return unexpected(bad_reply("the reply has no keys list"));
  std::vector<KeyInfo> out;
  out.reserve(keys->get_array().size());
  for (const auto& item : keys->get_array()) {
    auto k = decode_key_info(item);
    if (!k) return unexpected(k.error());
    out.push_back(std::move(*k));
  }
  return out;
}

Result<Health> decode_health(int status, std::string_view body) {
  auto v = parse_reply_json(body);
  if (!v) return unexpected(v.error());
  Health h;
  auto state = string_field(*v, "status");
  if (!state) return unexpected(bad_reply("the health reply has no status"));
  h.status = std::move(*state);
  h.http_status = status;
  if (const auto* token = field(*v, "token")) h.token_available = bool_field(*token, "available").value_or(false);
  if (const auto* audit = field(*v, "audit")) h.audit_writable = bool_field(*audit, "writable").value_or(false);
  h.body = std::string(body);
  return h;
}

Result<Attestation> decode_attestation(const json::value& v) {
  Attestation a;
  auto report = base64_field(v, "report");
  auto signature = base64_field(v, "signature");
  auto public_key = string_field(v, "public_key");
  auto key_id = string_field(v, "key_id");
  if (!report || !signature || !public_key || !key_id)
    return unexpected(bad_reply("the reply is not an attestation envelope (report, signature, public_key, key_id)"));
  a.report.assign(report->begin(), report->end());
  a.signature.assign(signature->begin(), signature->end());
  a.public_key = std::move(*public_key);
  a.key_id = std::move(*key_id);
  return a;
}

void check_attestation(Attestation& a, const std::optional<std::string>& pinned_public_key) {
  a.checked_with_pinned_key = pinned_public_key.has_value();
  auto key = read_public_key_pem(pinned_public_key.value_or(a.public_key));
  a.signature_ok = key && verify_sha256_signature(key.get(), a.report, a.signature);
  a.nonce_ok = false;
  if (auto doc = parse_reply_json(a.report)) a.nonce_ok = string_field(*doc, "nonce") == a.nonce;
}

}  // namespace custody::client::detail
