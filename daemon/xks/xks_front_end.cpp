#include "daemon/xks/xks_front_end.h"

#include <openssl/crypto.h>

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <ctime>
#include <spdlog/spdlog.h>

#include "common/base64.h"
#include "daemon/service/call.h"
#include "daemon/service/json_body.h"
#include "daemon/xks/ciphertext_metadata.h"

namespace custody::xks {

namespace json = boost::json;
using SteadyClock = std::chrono::steady_clock;

struct XksFrontEnd::Reply {
  service::Response response;
  std::string route = "unrouted";
  std::optional<ErrorName> error;
  std::optional<core::AuditEvent> event;  // nullopt: not audited (ping, unknown paths)
};

namespace {

constexpr const char* kRoutes[] = {"metadata", "encrypt", "decrypt", "health", "unrouted", "ping"};
constexpr ErrorName kErrorNames[] = {
    ErrorName::ValidationException,         ErrorName::InvalidStateException,      ErrorName::InvalidCiphertextException,
    ErrorName::InvalidKeyUsageException,    ErrorName::AuthenticationFailedException, ErrorName::AccessDeniedException,
    ErrorName::KeyNotFoundException,        ErrorName::InvalidUriPathException,    ErrorName::ThrottlingException,
    ErrorName::UnsupportedOperationException, ErrorName::DependencyTimeoutException, ErrorName::InternalException};
constexpr unsigned kMaxJsonDepth = 8;
constexpr std::size_t kMaxExternalKeyId = 128;
constexpr std::size_t kHealthProbeBytes = 32;
// KMS gives every call to the proxy 250 ms: a token whose encrypt and decrypt together take longer
// works, but not well enough for KMS, and the health check says DEGRADED.
constexpr std::chrono::milliseconds kKmsLatencyBudget{250};
// requestMetadata fields the spec names; others are accepted and logged (the spec: KMS may add some).
constexpr std::string_view kKnownMetadata[] = {"awsPrincipalArn", "awsSourceVpc", "awsSourceVpce", "kmsKeyArn",
                                               "kmsOperation",    "kmsRequestId", "kmsViaService"};

XksError fail(ErrorName name, std::string message) { return {name, std::move(message)}; }

std::span<const std::uint8_t> bytes_of(const SecureBytes& b) { return {b.data(), b.size()}; }

json::string b64(std::span<const std::uint8_t> data) { return json::string(base64_encode(data)); }

// An optional or required base64 field, with its size bounds, as the errorName the spec wants.
Expected<std::optional<SecureBytes>, XksError> base64_field(const json::object& body, std::string_view name,
                                                            bool required, std::size_t max, ErrorName too_big,
                                                            ErrorName malformed = ErrorName::ValidationException) {
  const json::value* v = body.if_contains(name);
  if (!v) {
    if (required) return unexpected(fail(malformed, std::string(name) + " is required"));
    return std::optional<SecureBytes>{};
  }
  if (!v->is_string()) return unexpected(fail(malformed, std::string(name) + " must be a base64 string"));
  const auto& s = v->as_string();
  if (s.size() > base64_encoded_size(max)) return unexpected(fail(too_big, std::string(name) + " is larger than " + std::to_string(max) + " bytes"));
  auto decoded = base64_decode(std::string_view(s.data(), s.size()));
  if (!decoded) return unexpected(fail(malformed, std::string(name) + " is not valid base64"));
  if (decoded->size() > max) return unexpected(fail(too_big, std::string(name) + " is larger than " + std::to_string(max) + " bytes"));
  return std::optional<SecureBytes>(std::move(*decoded));
}

std::optional<std::string> string_field(const json::object& o, std::string_view name) {
  const json::value* v = o.if_contains(name);
  if (!v || !v->is_string()) return std::nullopt;
  return std::string(v->as_string());
}

}  // namespace

XksFrontEnd::XksFrontEnd(XksSettings settings, const CredentialSet& credentials, core::KeyRegistry& registry,
                         core::TokenKeyVault& vault, core::AuditLog& audit, service::Metrics& metrics,
                         const service::HealthState* health)
    : settings_(std::move(settings)),
      credentials_(credentials),
      registry_(registry),
      vault_(vault),
      audit_(audit),
      metrics_(metrics),
      health_(health) {
  for (const char* route : kRoutes) {
    series_[route] = &metrics_.request_series("xks", route);
    for (ErrorName name : kErrorNames) {
      const std::string label = std::string(route) + ":" + error_name_text(name);
      series_[label] = &metrics_.request_series("xks", label);
    }
  }
}

service::RequestSeries& XksFrontEnd::series(const std::string& route, const std::string& error_name) {
  auto it = series_.find(error_name.empty() ? route : route + ":" + error_name);
  if (it == series_.end()) it = series_.find("unrouted:InternalException");
  return *it->second;
}

void XksFrontEnd::handle(const service::Request& request, const transport::Origin& origin, Done done) {
  const auto start = SteadyClock::now();
  Reply reply;
  try {
    reply = route(request, origin);
  } catch (const std::exception& e) {
    spdlog::error("xks {} {}: {}", request.method, request.target, e.what());
    reply.response = error_response(fail(ErrorName::InternalException, "internal error"));
    reply.error = ErrorName::InternalException;
  }
  if (reply.event) {
    reply.event->client = settings_.peer;
    reply.event->request_id = request.request_id;
    if (!origin.address.empty()) reply.event->extra["remote"] = origin.address;
    if (!origin.tls_client_subject.empty()) reply.event->extra["tls_client_subject"] = origin.tls_client_subject;
    reply.event->extra["duration_us"] =
        std::chrono::duration_cast<std::chrono::microseconds>(SteadyClock::now() - start).count();
    if (reply.error) reply.event->result = error_name_text(*reply.error);
  }
  send(std::move(reply), request, start, std::move(done));
}

void XksFrontEnd::refuse(const service::Request& request, const transport::Origin& origin, const core::Error& error,
                         Done done) {
  Reply reply;
  // Over a limit: KMS should back off (ThrottlingException); malformed or too large: ValidationException.
  XksError e = error.code == core::Code::resource_exhausted  ? fail(ErrorName::ThrottlingException, error.message)
               : error.code == core::Code::unavailable       ? fail(ErrorName::DependencyTimeoutException, error.message)
                                                             : fail(ErrorName::ValidationException, error.message);
  reply.response = error_response(e);
  reply.error = e.name;
  reply.event.emplace();
  reply.event->type = "xks.refused";
  reply.event->client = settings_.peer;
  reply.event->request_id = request.request_id;
  reply.event->result = error_name_text(e.name);
  reply.event->extra["remote"] = origin.address;
  reply.event->extra["reason"] = error.message;
  send(std::move(reply), request, SteadyClock::now(), std::move(done));
}

service::Response XksFrontEnd::connection_refused(const core::Error& error, const std::string&) {
  series("unrouted", "ThrottlingException").count(429, std::chrono::nanoseconds(0));
  return error_response(fail(ErrorName::ThrottlingException, error.message));
}

void XksFrontEnd::send(Reply reply, const service::Request& request, SteadyClock::time_point start, Done done) {
  auto* counted = &series(reply.route, reply.error ? error_name_text(*reply.error) : "");
  if (!reply.event) {
    counted->count(reply.response.status, SteadyClock::now() - start);
    done(std::move(reply.response));
    return;
  }
  std::vector<core::AuditEvent> records{std::move(*reply.event)};
  auto answer = [counted, start, this](Done& done, service::Response& response, bool written) {
    if (!written) {
      // Fail closed: an answer whose record is not written is not given.
      response = error_response(fail(ErrorName::DependencyTimeoutException, "the audit log cannot be written"));
      series("unrouted", "DependencyTimeoutException").count(response.status, SteadyClock::now() - start);
    } else {
      counted->count(response.status, SteadyClock::now() - start);
    }
    done(std::move(response));
  };
  if (request.audit_on_this_thread)
    if (auto written = audit_.write_now(records)) return answer(done, reply.response, *written);
  audit_.submit(std::move(records), [answer, done = std::move(done), response = std::move(reply.response)](bool written) mutable {
    answer(done, response, written);
  });
}

XksFrontEnd::Reply XksFrontEnd::route(const service::Request& request, const transport::Origin& origin) {
  Reply reply;
  auto failed = [&reply](XksError e) {
    reply.error = e.name;
    reply.response = error_response(e);
    return std::move(reply);
  };
  if (request.target == settings_.ping_path) {
    reply.route = "ping";
    if (request.method != "GET" && request.method != "HEAD") {
      reply.response = method_not_allowed_response();
      return reply;
    }
    reply.response = service::json_response(200, json::object{{"status", "ok"}});
    return reply;
  }
  const std::string base = settings_.uri_prefix + "/kms/xks/v1/";
  std::string_view path = request.target;
  if (path.substr(0, base.size()) != base)
    return failed(fail(ErrorName::InvalidUriPathException, "no XKS API at this path"));
  path.remove_prefix(base.size());
  std::string external_id;
  if (path == "health") {
    reply.route = "health";
  } else if (path.substr(0, 5) == "keys/") {
    path.remove_prefix(5);
    const auto slash = path.find('/');
    if (slash == std::string_view::npos || slash == 0 || slash > kMaxExternalKeyId)
      return failed(fail(ErrorName::InvalidUriPathException, "expected keys/{externalKeyId}/{metadata|encrypt|decrypt}"));
    external_id = std::string(path.substr(0, slash));
    const std::string_view op = path.substr(slash + 1);
    if (op != "metadata" && op != "encrypt" && op != "decrypt")
      return failed(fail(ErrorName::InvalidUriPathException, "expected keys/{externalKeyId}/{metadata|encrypt|decrypt}"));
    reply.route = std::string(op);
  } else {
    return failed(fail(ErrorName::InvalidUriPathException, "no XKS API at this path"));
  }
  if (request.method != "POST") {
    reply.response = method_not_allowed_response();
    return reply;
  }

  // From here on every call is audited, the refused ones too.
  core::AuditEvent& event = reply.event.emplace();
  event.type = "xks." + reply.route;
  if (!external_id.empty()) event.extra["external_key_id"] = external_id;
  if (!audit_.accepting()) return failed(fail(ErrorName::DependencyTimeoutException, "the audit log cannot be written"));

  static const std::vector<transport::HttpField> no_fields;
  const std::string_view body(request.body.data(), request.body.size());
  auto signer = verify_sigv4(SignedRequest{request.method, origin.raw_target.empty() ? std::string_view(request.target) : std::string_view(origin.raw_target),
                                           origin.fields ? *origin.fields : no_fields, body},
                             *credentials_.current(), settings_.sigv4, std::time(nullptr));
  if (!signer) {
    spdlog::warn("xks {} from {}: authentication failed: {}", request.target, origin.address, signer.error());
    event.extra["reason"] = signer.error();
    return failed(fail(ErrorName::AuthenticationFailedException, "the SigV4 signature is not valid"));
  }
  event.extra["access_key_id"] = *signer;

  auto parsed = service::parse_body(body, kMaxJsonDepth);
  if (!parsed) return failed(fail(ErrorName::ValidationException, "the body is not a JSON object: " + parsed.error().message));
  const json::object& object = *parsed;
  const json::value* request_metadata = object.if_contains("requestMetadata");
  if (!request_metadata || !request_metadata->is_object()) {
    if (reply.route != "health") return failed(fail(ErrorName::ValidationException, "requestMetadata is required"));
  } else {
    const auto& m = request_metadata->as_object();
    for (const char* name : {"kmsRequestId", "kmsOperation", "awsPrincipalArn", "kmsKeyArn", "kmsViaService", "awsSourceVpc", "awsSourceVpce"})
      if (auto v = string_field(m, name)) event.extra[name] = *v;
    json::array unknown;
    for (const auto& [k, v] : m)
      if (std::find(std::begin(kKnownMetadata), std::end(kKnownMetadata), std::string_view(k)) == std::end(kKnownMetadata))
        unknown.emplace_back(json::string(k.substr(0, 64)));
    if (!unknown.empty()) {
      spdlog::info("xks {}: requestMetadata has fields this proxy does not know: {}", reply.route, json::serialize(unknown));
      event.extra["unknown_metadata"] = std::move(unknown);
    }
    if (reply.route != "health") {
      if (!string_field(m, "kmsRequestId")) return failed(fail(ErrorName::ValidationException, "requestMetadata.kmsRequestId is required"));
      if (!string_field(m, "kmsOperation")) return failed(fail(ErrorName::ValidationException, "requestMetadata.kmsOperation is required"));
      if (reply.route != "metadata" && !string_field(m, "awsPrincipalArn"))
        return failed(fail(ErrorName::ValidationException, "requestMetadata.awsPrincipalArn is required"));
    }
  }
  if (reply.route != "health" && !settings_.authorization.empty()) {
    AuthorizationRequest asked{external_id, {}, {}, {}, {}, {}};
    if (request_metadata && request_metadata->is_object()) {
      const auto& m = request_metadata->as_object();
      asked.principal = string_field(m, "awsPrincipalArn");
      asked.kms_key_arn = string_field(m, "kmsKeyArn");
      asked.operation = string_field(m, "kmsOperation");
      asked.source_vpc = string_field(m, "awsSourceVpc");
      asked.source_vpce = string_field(m, "awsSourceVpce");
    }
    auto verdict = authorize(settings_.authorization, asked);
    if (!verdict.allowed) {
      json::array reasons;
      for (const auto& why : verdict.reasons) reasons.emplace_back(json::string(why));
      spdlog::warn("xks {} {}: denied by secondary authorization: {}", reply.route, external_id, json::serialize(reasons));
      event.extra["denied_by"] = std::move(reasons);
      return failed(fail(ErrorName::AccessDeniedException, "no authorization rule allows this request"));
    }
    event.extra["allowed_by"] = verdict.allowed_by;
  }
  Reply done;
  if (reply.route == "health") done = health(event);
  else if (reply.route == "metadata") done = metadata(external_id, object, event);
  else if (reply.route == "encrypt") done = encrypt(external_id, object, event);
  else done = decrypt(external_id, object, event);
  done.route = reply.route;
  done.event = std::move(reply.event);
  return done;
}

namespace {

struct Resolved {
  std::string name;
  std::shared_ptr<const core::Key> key;
};

bool allows(const core::Key& key, const core::Peer& peer, core::Operation op) {
  return key.algorithm == core::Algorithm::aes_256_gcm && key.policy.allows(peer, op);
}

}  // namespace

#define XKS_FAIL(e)                      \
  do {                                   \
    Reply r;                             \
    r.error = (e).name;                  \
    r.response = error_response(e);      \
    return r;                            \
  } while (0)

XksFrontEnd::Reply XksFrontEnd::metadata(const std::string& external_id, const json::object&, core::AuditEvent& event) {
  auto it = settings_.keys.find(external_id);
  if (it == settings_.keys.end()) XKS_FAIL(fail(ErrorName::KeyNotFoundException, "no external key " + external_id));
  auto key = registry_.find(it->second);
  event.key = it->second;
  if (!key || key->state == core::KeyState::destroyed) XKS_FAIL(fail(ErrorName::KeyNotFoundException, "no external key " + external_id));
  json::array usage;
  if (allows(*key, settings_.peer, core::Operation::wrap)) usage.emplace_back("ENCRYPT");
  if (allows(*key, settings_.peer, core::Operation::unwrap)) usage.emplace_back("DECRYPT");
  Reply r;
  r.response = service::json_response(
      200, json::object{{"keySpec", "AES_256"},
                        {"keyUsage", std::move(usage)},
                        {"keyStatus", key->state == core::KeyState::enabled ? "ENABLED" : "DISABLED"}});
  return r;
}

XksFrontEnd::Reply XksFrontEnd::encrypt(const std::string& external_id, const json::object& body, core::AuditEvent& event) {
  auto it = settings_.keys.find(external_id);
  if (it == settings_.keys.end()) XKS_FAIL(fail(ErrorName::KeyNotFoundException, "no external key " + external_id));
  event.key = it->second;
  auto key = registry_.find(it->second);
  if (!key || key->state == core::KeyState::destroyed) XKS_FAIL(fail(ErrorName::KeyNotFoundException, "no external key " + external_id));
  if (key->state != core::KeyState::enabled) XKS_FAIL(fail(ErrorName::InvalidStateException, "the key is " + std::string(core::key_state_name(key->state))));
  if (!allows(*key, settings_.peer, core::Operation::wrap)) XKS_FAIL(fail(ErrorName::InvalidKeyUsageException, "the key does not allow ENCRYPT"));
  if (string_field(body, "encryptionAlgorithm") != std::optional<std::string>("AES_GCM"))
    XKS_FAIL(fail(ErrorName::ValidationException, "encryptionAlgorithm must be AES_GCM"));
  bool want_cdiv = false;
  if (body.contains("ciphertextDataIntegrityValueAlgorithm")) {
    if (string_field(body, "ciphertextDataIntegrityValueAlgorithm") != std::optional<std::string>("SHA_256"))
      XKS_FAIL(fail(ErrorName::ValidationException, "ciphertextDataIntegrityValueAlgorithm must be SHA_256"));
    want_cdiv = true;
  }
  auto plaintext = base64_field(body, "plaintext", true, kMaxPlaintextBytes, ErrorName::UnsupportedOperationException);
  if (!plaintext) XKS_FAIL(plaintext.error());
  auto aad = base64_field(body, "additionalAuthenticatedData", false, kMaxAadBytes, ErrorName::UnsupportedOperationException);
  if (!aad) XKS_FAIL(aad.error());
  const SecureBytes no_aad;
  const SecureBytes& aad_bytes = *aad ? **aad : no_aad;
  const core::KeyVersion* version = key->find_version(key->current_version);
  if (!version) XKS_FAIL(fail(ErrorName::InternalException, "the key has no current version"));
  event.version = version->version;
  const Bytes metadata = encode_metadata(version->version);
  const Bytes hsm_aad = token_aad(bytes_of(aad_bytes), metadata);
  // The IV comes from the token: its generator, or the token itself where it insists (quirks).
  auto encrypted = vault_.gcm_encrypt_fresh_iv(version->object, hsm_aad, bytes_of(**plaintext));
  if (!encrypted) XKS_FAIL(from_core(encrypted.error()));
  const Bytes& iv = encrypted->iv;
  const SecureBytes* sealed = &encrypted->ciphertext_and_tag;
  if (iv.size() != kIvBytes) XKS_FAIL(fail(ErrorName::InternalException, "the token answered an IV of an unexpected length"));
  if (sealed->size() != (*plaintext)->size() + kTagBytes) XKS_FAIL(fail(ErrorName::InternalException, "the token answered an unexpected length"));
  const std::span<const std::uint8_t> ct(sealed->data(), (*plaintext)->size());
  const std::span<const std::uint8_t> tag(sealed->data() + ct.size(), kTagBytes);
  json::object out{{"ciphertext", b64(ct)},
                   {"ciphertextMetadata", b64(metadata)},
                   {"initializationVector", b64(iv)},
                   {"authenticationTag", b64(tag)}};
  if (want_cdiv) {
    // The CDIV promises KMS that a decrypt of exactly these values succeeds: computed first, then
    // proved by decrypting them before the answer goes out.
    const Bytes cdiv = integrity_value(bytes_of(aad_bytes), metadata, iv, ct, tag);
    if (cdiv.empty()) XKS_FAIL(fail(ErrorName::InternalException, "cannot compute the CDIV"));
    auto check = vault_.gcm_decrypt(version->object, iv, hsm_aad, bytes_of(*sealed));
    if (!check || check->size() != (*plaintext)->size() ||
        CRYPTO_memcmp(check->data(), (*plaintext)->data(), check->size()) != 0) {
      spdlog::error("xks encrypt: the verification decrypt with {} v{} failed", it->second, version->version);
      XKS_FAIL(fail(ErrorName::InternalException, "the verification decrypt failed"));
    }
    out["ciphertextDataIntegrityValue"] = b64(cdiv);
  }
  Reply r;
  r.response = service::json_response(200, out);
  return r;
}

XksFrontEnd::Reply XksFrontEnd::decrypt(const std::string& external_id, const json::object& body, core::AuditEvent& event) {
  auto it = settings_.keys.find(external_id);
  if (it == settings_.keys.end()) XKS_FAIL(fail(ErrorName::KeyNotFoundException, "no external key " + external_id));
  event.key = it->second;
  auto key = registry_.find(it->second);
  if (!key || key->state == core::KeyState::destroyed) XKS_FAIL(fail(ErrorName::KeyNotFoundException, "no external key " + external_id));
  if (key->state != core::KeyState::enabled) XKS_FAIL(fail(ErrorName::InvalidStateException, "the key is " + std::string(core::key_state_name(key->state))));
  if (!allows(*key, settings_.peer, core::Operation::unwrap)) XKS_FAIL(fail(ErrorName::InvalidKeyUsageException, "the key does not allow DECRYPT"));
  if (string_field(body, "encryptionAlgorithm") != std::optional<std::string>("AES_GCM"))
    XKS_FAIL(fail(ErrorName::ValidationException, "encryptionAlgorithm must be AES_GCM"));
  constexpr auto bad = ErrorName::InvalidCiphertextException;
  auto ciphertext = base64_field(body, "ciphertext", true, kMaxPlaintextBytes, ErrorName::UnsupportedOperationException, bad);
  if (!ciphertext) XKS_FAIL(ciphertext.error());
  auto aad = base64_field(body, "additionalAuthenticatedData", false, kMaxAadBytes, ErrorName::UnsupportedOperationException);
  if (!aad) XKS_FAIL(aad.error());
  auto iv = base64_field(body, "initializationVector", true, 16, bad, bad);
  if (!iv) XKS_FAIL(iv.error());
  auto tag = base64_field(body, "authenticationTag", true, kTagBytes, bad, bad);
  if (!tag) XKS_FAIL(tag.error());
  auto metadata = base64_field(body, "ciphertextMetadata", false, 20, bad, bad);
  if (!metadata) XKS_FAIL(metadata.error());
  if ((*iv)->size() != kIvBytes) XKS_FAIL(fail(bad, "initializationVector must be 12 bytes"));
  if ((*tag)->size() != kTagBytes) XKS_FAIL(fail(bad, "authenticationTag must be 16 bytes"));
  if (!*metadata) XKS_FAIL(fail(bad, "ciphertextMetadata is missing: this proxy always returns one"));
  const auto version_number = decode_metadata(bytes_of(**metadata));
  if (!version_number) XKS_FAIL(fail(bad, "ciphertextMetadata is not one this proxy made"));
  event.version = *version_number;
  const core::KeyVersion* version = key->find_version(*version_number);
  if (!version || version->state != "enabled" || *version_number < key->min_decrypt_version)
    XKS_FAIL(fail(bad, "the key version in ciphertextMetadata cannot decrypt"));
  const SecureBytes no_aad;
  const Bytes hsm_aad = token_aad(bytes_of(*aad ? **aad : no_aad), bytes_of(**metadata));
  SecureBytes sealed(**ciphertext);
  sealed.insert(sealed.end(), (*tag)->begin(), (*tag)->end());
  auto opened = vault_.gcm_decrypt(version->object, bytes_of(**iv), hsm_aad, bytes_of(sealed));
  if (!opened) XKS_FAIL(from_core(opened.error()));
  json::object out;
  out["plaintext"] = service::secret_base64(bytes_of(*opened));
  Reply r;
  r.response = service::json_response(200, out);
  return r;
}

std::string XksFrontEnd::probe_health() {
  if (!vault_.available()) return "UNAVAILABLE";
  auto key = registry_.find(settings_.health_key);
  if (!key || key->state != core::KeyState::enabled || key->algorithm != core::Algorithm::aes_256_gcm) {
    spdlog::warn("xks health: the health key '{}' is missing, not enabled or not aes-256-gcm", settings_.health_key);
    return "UNAVAILABLE";
  }
  const core::KeyVersion* version = key->find_version(key->current_version);
  if (!version) return "UNAVAILABLE";
  const auto started = SteadyClock::now();
  Bytes probe(kHealthProbeBytes);
  if (!vault_.random(probe)) return "UNAVAILABLE";
  const Bytes aad = token_aad({}, encode_metadata(version->version));
  // The same encrypt path as the Encrypt route, IV handling included.
  auto sealed = vault_.gcm_encrypt_fresh_iv(version->object, aad, probe);
  if (!sealed) return "UNAVAILABLE";
  auto opened = vault_.gcm_decrypt(version->object, sealed->iv, aad, bytes_of(sealed->ciphertext_and_tag));
  if (!opened || opened->size() != probe.size() || CRYPTO_memcmp(opened->data(), probe.data(), probe.size()) != 0)
    return "UNAVAILABLE";
  if (const auto took = SteadyClock::now() - started; took > kKmsLatencyBudget) {
    spdlog::warn("xks health: the token's encrypt and decrypt took {} ms, over KMS's 250 ms budget: DEGRADED",
                 std::chrono::duration_cast<std::chrono::milliseconds>(took).count());
    return "DEGRADED";
  }
  return health_ && health_->degraded() ? "DEGRADED" : "ACTIVE";
}

XksFrontEnd::HealthVerdict XksFrontEnd::health_verdict() {
  std::lock_guard lock(health_mutex_);
  const auto now = SteadyClock::now();
  if (health_cache_ && now - health_cache_->at < settings_.health_cache) return *health_cache_;
  HealthVerdict verdict{now, probe_health(), health_cache_ ? health_cache_->fleet_size : 1};
  // A token that cannot list the fleet now keeps the size last seen (the status says why).
  if (settings_.fleet_size)
    if (auto size = settings_.fleet_size(); size && *size > 0) verdict.fleet_size = *size;
  health_cache_ = verdict;
  return verdict;
}

std::string XksFrontEnd::health_status() { return health_verdict().status; }

XksFrontEnd::Reply XksFrontEnd::health(core::AuditEvent& event) {
  const HealthVerdict verdict = health_verdict();
  const std::string& status = verdict.status;
  event.extra["health_status"] = status;
  json::array fleet;
  fleet.emplace_back(json::object{{"id", settings_.ekm_id}, {"model", settings_.ekm_model}, {"healthStatus", status}});
  Reply r;
  r.response = service::json_response(200, json::object{{"xksProxyFleetSize", verdict.fleet_size},
                                                        {"xksProxyVendor", "custody"},
                                                        {"xksProxyModel", settings_.proxy_model},
                                                        {"ekmVendor", settings_.ekm_vendor},
                                                        {"ekmFleetDetails", std::move(fleet)}});
  return r;
}

}  // namespace custody::xks
