#include "custody/client.h"

#include <algorithm>
#include <cstdlib>
#include <thread>

#include "common/base64.h"
#include "common/random.h"
#include "custody/detail/reply_decoding.h"

namespace custody::client {

namespace json = boost::json;
using detail::bad_reply;

std::string default_service_socket() {
  const char* env = std::getenv("CUSTODY_SERVICE_SOCKET");
  return env && *env ? env : "/run/custody/service.sock";
}

namespace {

constexpr std::size_t kMaxBatch = 256;  // CONTRACT §3

Error usage_error(std::string message) {
  Error e;
  e.code = ErrorCode::invalid_argument;
  e.message = std::move(message);
  return e;
}

// CONTRACT §2; checked here because the name becomes part of the request's path.
bool valid_key_name(std::string_view name) {
  if (name.empty() || name.size() > 63) return false;
  auto alnum = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
  if (!alnum(name[0])) return false;
  return std::all_of(name.begin(), name.end(), [&](char c) { return alnum(c) || c == '.' || c == '_' || c == '-'; });
}

// A JSON object written straight into wiped memory: request bodies may carry plaintext (base64).
class BodyWriter {
 public:
  BodyWriter() { text_.push_back('{'); }
  BodyWriter& string(std::string_view name, std::string_view value) {
    key(name);
    text_.append(json::serialize(json::string(value)));
    return *this;
  }
  BodyWriter& secret_base64(std::string_view name, std::span<const std::uint8_t> bytes) {
    key(name);
    text_.push_back('"');
    const std::size_t at = text_.size();
    text_.resize(at + base64_encoded_size(bytes.size()));
    base64_encode_into(bytes, text_.data() + at);
    text_.push_back('"');
    return *this;
  }
  BodyWriter& number(std::string_view name, std::uint64_t value) {
    key(name);
    text_.append(std::to_string(value));
    return *this;
  }
  BodyWriter& boolean(std::string_view name, bool value) {
    key(name);
    text_.append(value ? "true" : "false");
    return *this;
  }
  BodyWriter& context(const Context& ctx) {
    if (ctx.empty()) return *this;
    json::object o;
    for (const auto& [k, v] : ctx) o[k] = v;
    key("context");
    text_.append(json::serialize(o));
    return *this;
  }
  BodyWriter& raw(std::string_view name, std::string_view json_text) {
    key(name);
    text_.append(json_text);
    return *this;
  }
  SecureString done() {
    text_.push_back('}');
    return std::move(text_);
  }

 private:
  void key(std::string_view name) {
    if (text_.size() > 1) text_.push_back(',');
    text_.append(json::serialize(json::string(name)));
    text_.push_back(':');
  }
  SecureString text_;
};

SecureString batch_body(const std::vector<SecureString>& items) {
  SecureString out;
  out.append("{\"batch\":[");
  for (std::size_t i = 0; i < items.size(); ++i) {
    if (i) out.push_back(',');
    out.append(items[i]);
  }
  out.append("]}");
  return out;
}

std::string key_target(std::string_view key, std::string_view operation) {
  return "/v1/keys/" + std::string(key) + "/" + std::string(operation);
}

}  // namespace

struct Client::Impl {
  ClientOptions options;
  UnixHttpClient http;

  explicit Impl(ClientOptions o)
      : options(std::move(o)), http(options.socket_path, options.timeout, options.limits) {}

  // Sends, repeating only a replayable request, only when the daemon can have done nothing with it
  // or says a later attempt helps. Any HTTP status is returned; retry_status: also repeat on 429
  // and on 503 with Retry-After.
  Expected<SecureHttpReply, Error> send(std::string_view method, std::string_view target, std::string_view body,
                                        bool replayable, bool retry_status = true) {
    const unsigned attempts = replayable ? std::max(1u, options.max_attempts) : 1u;
    std::chrono::milliseconds backoff{50};
    for (unsigned attempt = 1;; ++attempt) {
      auto r = http.exchange(method, target, body, {{"User-Agent", options.user_agent}}, replayable);
      std::optional<std::chrono::seconds> retry_after;
      bool again = false;
      if (!r) {
        again = r.error().code == ErrorCode::connection_failed;
      } else {
        retry_after = r->retry_after;
        again = retry_status && (r->status == 429 || (r->status == 503 && r->retry_after));
      }
      if (!again || attempt >= attempts) return r;
      auto wait = retry_after ? std::chrono::duration_cast<std::chrono::milliseconds>(*retry_after) : backoff;
      std::this_thread::sleep_for(std::min(wait, options.max_retry_wait));
      backoff *= 2;
    }
  }

  struct JsonReply {
    json::value body;
    std::string request_id;
    // A decoded result, or its error tagged with the request it answered.
    template <class T>
    Result<T> tag(Result<T> r) const {
      if (r) return r;
      Error e = r.error();
      e.request_id = request_id;
      return unexpected(std::move(e));
    }
  };

  // send, with a non-2xx status turned into the daemon's Error and the body parsed.
  Result<JsonReply> call_json(std::string_view method, std::string_view target, std::string_view body,
                                bool replayable) {
    auto r = send(method, target, body, replayable);
    if (!r) return unexpected(r.error());
    if (r->status < 200 || r->status > 299)
      return unexpected(detail::error_from_reply(r->status, r->body.view(), r->request_id, r->retry_after));
    auto v = detail::parse_reply_json(r->body.view());
    if (!v) {
      Error e = v.error();
      e.request_id = r->request_id;
      return unexpected(std::move(e));
    }
    return JsonReply{std::move(*v), std::move(r->request_id)};
  }

  template <class T, class Decode>
  Result<T> typed(std::string_view target, std::string_view body, bool replayable, Decode decode) {
    auto v = call_json("POST", target, body, replayable);
    if (!v) return unexpected(v.error());
    return v->tag(Result<T>(decode(v->body)));
  }

  template <class T, class Items, class Write, class Decode>
  BatchResult<T> batch(std::string_view key, std::string_view operation, const Items& items, bool replayable,
                       Write write_item, Decode decode_item) {
    if (!valid_key_name(key)) return unexpected(usage_error("not a key name: '" + std::string(key) + "'"));
    if (items.empty() || items.size() > kMaxBatch)
      return unexpected(usage_error("a batch has 1.." + std::to_string(kMaxBatch) + " items"));
    std::vector<SecureString> bodies;
    bodies.reserve(items.size());
    for (const auto& item : items) bodies.push_back(write_item(item));
    auto v = call_json("POST", key_target(key, operation), batch_body(bodies).view(), replayable);
    if (!v) return unexpected(v.error());
    std::size_t index = 0;
    return v->tag(detail::decode_batch<T>(v->body, items.size(),
                                          [&](const json::value& item) { return decode_item(item, items[index++]); }));
  }
};

Client::Client(ClientOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {}
Client::~Client() = default;
Client::Client(Client&&) noexcept = default;
Client& Client::operator=(Client&&) noexcept = default;

const ClientOptions& Client::options() const { return impl_->options; }

Result<Reply> Client::request(std::string_view method, std::string_view target, std::string_view body, bool replayable) {
  auto r = impl_->send(method, target, body, replayable);
  if (!r) return unexpected(r.error());
  if (r->status < 200 || r->status > 299)
    return unexpected(detail::error_from_reply(r->status, r->body.view(), r->request_id, r->retry_after));
  return Reply{r->status, std::move(r->body), std::move(r->request_id)};
}

// Counts usage: sent once (see client.h).
Result<Wrapped> Client::wrap(std::string_view key, std::span<const std::uint8_t> plaintext, const Context& context) {
  if (!valid_key_name(key)) return unexpected(usage_error("not a key name: '" + std::string(key) + "'"));
  auto body = BodyWriter().secret_base64("plaintext", plaintext).context(context).done();
  return impl_->typed<Wrapped>(key_target(key, "wrap"), body.view(), false, detail::decode_wrapped);
}

Result<Unwrapped> Client::unwrap(std::string_view key, std::string_view ciphertext, const Context& context) {
  if (!valid_key_name(key)) return unexpected(usage_error("not a key name: '" + std::string(key) + "'"));
  auto body = BodyWriter().string("ciphertext", ciphertext).context(context).done();
  return impl_->typed<Unwrapped>(key_target(key, "unwrap"), body.view(), true, detail::decode_unwrapped);
}

// Counts usage: sent once.
Result<DataKey> Client::datakey(std::string_view key, unsigned length, const Context& context, bool include_plaintext) {
  if (!valid_key_name(key)) return unexpected(usage_error("not a key name: '" + std::string(key) + "'"));
  auto body = BodyWriter().number("length", length).context(context).boolean("include_plaintext", include_plaintext).done();
  return impl_->typed<DataKey>(key_target(key, "datakey"), body.view(), false,
                               [&](const json::value& v) { return detail::decode_datakey(v, include_plaintext); });
}

// Makes a new ciphertext and counts usage: sent once.
Result<Wrapped> Client::rewrap(std::string_view key, std::string_view ciphertext, const Context& context) {
  if (!valid_key_name(key)) return unexpected(usage_error("not a key name: '" + std::string(key) + "'"));
  auto body = BodyWriter().string("ciphertext", ciphertext).context(context).done();
  return impl_->typed<Wrapped>(key_target(key, "rewrap"), body.view(), false, detail::decode_wrapped);
}

Result<DerivedKey> Client::derive(std::string_view key, std::span<const std::uint8_t> info, unsigned length,
                                  std::optional<std::uint32_t> version) {
  if (!valid_key_name(key)) return unexpected(usage_error("not a key name: '" + std::string(key) + "'"));
  BodyWriter w;
  w.secret_base64("info", info).number("length", length);
  if (version) w.number("version", *version);
  auto body = w.done();
  return impl_->typed<DerivedKey>(key_target(key, "derive"), body.view(), true,
                                  [&](const json::value& v) { return detail::decode_derived(v, length); });
}

BatchResult<Wrapped> Client::wrap_batch(std::string_view key, std::span<const WrapItem> items) {
  return impl_->batch<Wrapped>(
      key, "wrap", items, false,
      [](const WrapItem& i) { return BodyWriter().secret_base64("plaintext", i.plaintext).context(i.context).done(); },
      [](const json::value& v, const WrapItem&) { return detail::decode_wrapped(v); });
}

BatchResult<Unwrapped> Client::unwrap_batch(std::string_view key, std::span<const UnwrapItem> items) {
  return impl_->batch<Unwrapped>(
      key, "unwrap", items, true,
      [](const UnwrapItem& i) { return BodyWriter().string("ciphertext", i.ciphertext).context(i.context).done(); },
      [](const json::value& v, const UnwrapItem&) { return detail::decode_unwrapped(v); });
}

BatchResult<DataKey> Client::datakey_batch(std::string_view key, std::span<const DataKeyItem> items) {
  return impl_->batch<DataKey>(
      key, "datakey", items, false,
      [](const DataKeyItem& i) {
        return BodyWriter().number("length", i.length).context(i.context).boolean("include_plaintext", i.include_plaintext).done();
      },
      [](const json::value& v, const DataKeyItem& i) { return detail::decode_datakey(v, i.include_plaintext); });
}

BatchResult<Wrapped> Client::rewrap_batch(std::string_view key, std::span<const UnwrapItem> items) {
  return impl_->batch<Wrapped>(
      key, "rewrap", items, false,
      [](const UnwrapItem& i) { return BodyWriter().string("ciphertext", i.ciphertext).context(i.context).done(); },
      [](const json::value& v, const UnwrapItem&) { return detail::decode_wrapped(v); });
}

BatchResult<DerivedKey> Client::derive_batch(std::string_view key, std::span<const DeriveItem> items) {
  return impl_->batch<DerivedKey>(
      key, "derive", items, true,
      [](const DeriveItem& i) {
        BodyWriter w;
        w.secret_base64("info", i.info).number("length", i.length);
        if (i.version) w.number("version", *i.version);
        return w.done();
      },
      [](const json::value& v, const DeriveItem& i) { return detail::decode_derived(v, i.length); });
}

Result<std::vector<KeyInfo>> Client::keys() {
  auto v = impl_->call_json("GET", "/v1/keys", {}, true);
  if (!v) return unexpected(v.error());
  return v->tag(detail::decode_key_list(v->body));
}

Result<KeyInfo> Client::key(std::string_view name) {
  if (!valid_key_name(name)) return unexpected(usage_error("not a key name: '" + std::string(name) + "'"));
  auto v = impl_->call_json("GET", "/v1/keys/" + std::string(name), {}, true);
  if (!v) return unexpected(v.error());
  return v->tag(detail::decode_key_info(v->body));
}

Result<Health> Client::health() {
  // A 503 is the answer of a health probe, not a reason to wait and ask again.
  auto r = impl_->send("GET", "/v1/health", {}, true, false);
  if (!r) return unexpected(r.error());
  if (r->status == 200 || r->status == 503) {
    auto h = detail::decode_health(r->status, r->body.view());
    if (h || r->status == 200) return h;
  }
  return unexpected(detail::error_from_reply(r->status, r->body.view(), r->request_id, r->retry_after));
}

Result<Attestation> Client::fetch_attestation(const AttestOptions& options) {
  std::string nonce;
  if (options.nonce) {
    if (options.nonce->size() > 64) return unexpected(usage_error("an attestation nonce is 0..64 bytes"));
    nonce = base64_encode(*options.nonce);
  } else {
    std::uint8_t raw[32];
    // A nonce that is not random proves no freshness: refuse rather than send zeros.
    if (auto random = fill_random(raw); !random) return unexpected(usage_error("cannot make a nonce: " + random.error()));
    nonce = base64_encode(raw);
  }
  BodyWriter w;
  w.string("nonce", nonce);
  if (!options.keys.empty()) {
    json::array names;
    for (const auto& k : options.keys) names.emplace_back(k);
    w.raw("keys", json::serialize(names));
  }
  auto body = w.done();
  auto v = impl_->call_json("POST", "/v1/attestation", body.view(), true);
  if (!v) return unexpected(v.error());
  auto a = v->tag(detail::decode_attestation(v->body));
  if (!a) return a;
  a->nonce = std::move(nonce);
  detail::check_attestation(*a, options.pinned_public_key);
  return a;
}

Result<Attestation> Client::attest(const AttestOptions& options) {
  auto a = fetch_attestation(options);
  if (!a || a->trusted()) return a;
  Error e;
  e.code = ErrorCode::verification_failed;
  e.message = !a->signature_ok ? std::string("the report's signature does not verify with ") +
                                     (a->checked_with_pinned_key ? "the pinned public key" : "the key sent with it")
                               : "the report does not echo the nonce sent (a replay?)";
  return unexpected(std::move(e));
}

}  // namespace custody::client
