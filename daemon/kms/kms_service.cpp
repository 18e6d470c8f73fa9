#include "daemon/kms/kms_service.h"

#include <openssl/crypto.h>

#include "daemon/kms/grpc_status.h"
#include "daemon/service/request.h"

namespace custody::kms {
namespace {

constexpr char kApiVersion[] = "v2";

std::span<const std::uint8_t> bytes_of(const std::string& s) {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

std::string key_id(const std::string& name, std::uint32_t version) { return name + "/v" + std::to_string(version); }

const core::Error kAuditDown{core::Code::unavailable, "the audit log cannot be written; no operation runs"};

using Clock = std::chrono::steady_clock;

}  // namespace

// The series are registered once, so the request path only counts.
KmsService::KmsService(KmsParts parts)
    : parts_(std::move(parts)),
      status_series_(parts_.metrics.request_series("kms", "Status")),
      encrypt_series_(parts_.metrics.request_series("kms", "Encrypt")),
      decrypt_series_(parts_.metrics.request_series("kms", "Decrypt")) {}

void KmsService::count(service::RequestSeries& series, Clock::time_point start, const core::Error* error) {
  series.count(error ? core::http_status(error->code) : 200, Clock::now() - start);
}

void KmsService::count_key_operation(core::Operation op, const core::AuditFacts& facts, const core::Error* error) {
  // The bound key is configured, not the caller's choice: it may be a label even while missing.
  parts_.metrics.key(facts.key.value_or(parts_.key)).count_operation(op, error ? std::optional(error->code) : std::nullopt);
}

core::Outcome<core::Peer> KmsService::caller(grpc::ServerContext& context) const {
  auto peer = parts_.peers.find(context.peer());
  // Only connections custodyd accepted itself reach the server; this is a bug if it happens.
  if (!peer) return core::fail(core::Code::unavailable, "the connection's credentials are unknown; reconnect");
  return *peer;
}

std::string KmsService::current_key_id() const {
  auto key = parts_.registry.find(parts_.key);
  return key ? key_id(key->name, key->current_version) : std::string();
}

bool KmsService::audit(const char* type, const std::string& uid, const core::Peer& peer,
                       const core::AuditFacts& facts, const char* result) {
  core::AuditEvent e;
  e.type = type;
  // kube-apiserver's uid for the request (a UUID) is what ties its logs to custody's.
  e.request_id = service::choose_request_id(uid);
  e.client = peer;
  e.result = result;
  e.key = facts.key;
  e.version = facts.version;
  e.context_sha256 = facts.context_sha256;
  e.extra["via"] = "kms";
  if (!facts.key_exists) e.extra["key_exists"] = false;
  return parts_.audit.write({std::move(e)});
}

grpc::Status KmsService::Status(grpc::ServerContext* context, const v2::StatusRequest*, v2::StatusResponse* response) {
  const auto start = Clock::now();
  auto peer = caller(*context);
  if (!peer) {
    count(status_series_, start, &peer.error());
    return grpc_status(peer.error());
  }
  // Status tells whether this caller can use the key, so it needs the right to both.
  auto key = parts_.registry.find(parts_.key);
  if (!key || !key->policy.allows(*peer, core::Operation::wrap) || !key->policy.allows(*peer, core::Operation::unwrap)) {
    core::AuditFacts facts;
    facts.key = parts_.key;
    facts.key_exists = key != nullptr;
    const core::Error denied{core::Code::permission_denied,
                             "uid " + std::to_string(peer->uid) + " may not wrap and unwrap with key '" + parts_.key + "'"};
    if (!audit("kms.status", "", *peer, facts, core::code_name(denied.code))) {
      count(status_series_, start, &kAuditDown);
      return grpc_status(kAuditDown);
    }
    count(status_series_, start, &denied);
    return grpc_status(denied);
  }
  response->set_version(kApiVersion);
  response->set_healthz(parts_.probe.healthz(*peer));
  // Read after the probe: a rotation that happened meanwhile shows at once.
  response->set_key_id(current_key_id());
  count(status_series_, start, nullptr);
  return grpc::Status::OK;
}

grpc::Status KmsService::Encrypt(grpc::ServerContext* context, const v2::EncryptRequest* request,
                                 v2::EncryptResponse* response) {
  const auto start = Clock::now();
  auto peer = caller(*context);
  if (!peer) {
    count(encrypt_series_, start, &peer.error());
    return grpc_status(peer.error());
  }
  if (!parts_.audit.accepting()) {
    count(encrypt_series_, start, &kAuditDown);
    return grpc_status(kAuditDown);
  }
  core::AuditFacts facts;
  auto sealed = parts_.runner.run<core::Sealed>([&] {
    // Empty context: Decrypt is given only the blob and the key_id (CONTRACT §10).
    return parts_.data_plane.wrap(*peer, parts_.key, bytes_of(request->plaintext()), {}, facts);
  });
  if (!facts.key) facts.key = parts_.key;
  const bool audited = audit("wrap", request->uid(), *peer, facts, sealed ? "ok" : core::code_name(sealed.error().code));
  count_key_operation(core::Operation::wrap, facts, sealed ? nullptr : &sealed.error());
  const core::Error* failed = !audited ? &kAuditDown : sealed ? nullptr : &sealed.error();
  count(encrypt_series_, start, failed);
  if (failed) return grpc_status(*failed);
  response->set_ciphertext(reinterpret_cast<const char*>(sealed->ciphertext.data()), sealed->ciphertext.size());
  response->set_key_id(key_id(parts_.key, sealed->version));
  return grpc::Status::OK;
}

grpc::Status KmsService::Decrypt(grpc::ServerContext* context, const v2::DecryptRequest* request,
                                 v2::DecryptResponse* response) {
  const auto start = Clock::now();
  auto peer = caller(*context);
  if (!peer) {
    count(decrypt_series_, start, &peer.error());
    return grpc_status(peer.error());
  }
  if (!parts_.audit.accepting()) {
    count(decrypt_series_, start, &kAuditDown);
    return grpc_status(kAuditDown);
  }
  core::AuditFacts facts;
  // The blob names its key version; the caller's key_id is only what it was told at Encrypt.
  auto opened = parts_.runner.run<core::Secret>(
      [&] { return parts_.data_plane.unwrap(*peer, parts_.key, bytes_of(request->ciphertext()), {}, facts); });
  if (!facts.key) facts.key = parts_.key;
  const bool audited = audit("unwrap", request->uid(), *peer, facts, opened ? "ok" : core::code_name(opened.error().code));
  count_key_operation(core::Operation::unwrap, facts, opened ? nullptr : &opened.error());
  const core::Error* failed = !audited ? &kAuditDown : opened ? nullptr : &opened.error();
  count(decrypt_series_, start, failed);
  if (failed) return grpc_status(*failed);
  response->set_plaintext(reinterpret_cast<const char*>(opened->plaintext.data()), opened->plaintext.size());
  return grpc::Status::OK;
}

}  // namespace custody::kms
