// Export (CONTRACT §11): each version of the recovery keys wrapped in the token under the trusted
// recovery public key, with a sample, signed by the attestation key.
#include <boost/json.hpp>

#include "common/hex.h"
#include "daemon/core/keys/policy.h"
#include "daemon/core/recovery/recovery.h"
#include "daemon/core/recovery/recovery_key.h"
#include "daemon/core/recovery/recovery_sample.h"

namespace custody::core {
namespace {

boost::json::object summary(const RecoveryBundle& b) {
  boost::json::array keys;
  for (const auto& k : b.keys) keys.emplace_back(k.name);
  return {{"id", b.id},
          {"created_at", rfc3339_seconds(b.created_at)},
          {"recovery_key_id", b.recovery_key_id},
          {"mechanism", b.mechanism},
          {"keys", std::move(keys)}};
}

}  // namespace

Outcome<ExportRequest> Recovery::check_export(const boost::json::object& params) {
  for (const auto& m : params)
    if (m.key() != "recovery_key_id" && m.key() != "keys")
      return fail(Code::invalid_argument, "unknown field 'params." + std::string(m.key()) + "'");
  ExportRequest r;
  const auto* id = params.if_contains("recovery_key_id");
  if (!id || !id->is_string() || !recovery_object_id(id->as_string()))
    return fail(Code::invalid_argument, "params.recovery_key_id must be the recovery key's key_id (64 lower-case hex digits)");
  r.recovery_key_id = std::string(id->as_string());
  if (const auto* keys = params.if_contains("keys"); keys && !keys->is_null()) {
    if (!keys->is_array() || keys->as_array().empty() || keys->as_array().size() > kMaxBundleKeys)
      return fail(Code::invalid_argument, "params.keys must be a non-empty list of key names");
    for (const auto& k : keys->as_array()) {
      if (!k.is_string() || !valid_key_name(k.as_string()))
        return fail(Code::invalid_argument, "params.keys must be a list of key names");
      const std::string name(k.as_string());
      auto key = registry_.find(name);
      if (!key) return fail(Code::not_found, "no key named '" + name + "'");
      // Refused here, and the token would refuse too: its objects are not extractable.
      if (!key->recovery)
        return fail(Code::failed_precondition, "key '" + name + "' was not created for recovery; it can never leave the token");
      for (const auto& seen : r.keys)
        if (seen == name) return fail(Code::invalid_argument, "params.keys names '" + name + "' twice");
      r.keys.push_back(name);
    }
  } else {
    for (const auto& key : registry_.all())
      if (key->recovery) r.keys.push_back(key->name);
    if (r.keys.empty()) return fail(Code::failed_precondition, "no key was created with \"recovery\": true");
  }
  return r;
}

Outcome<boost::json::object> Recovery::export_bundle(const ExportRequest& request, const std::string& request_id) {
  auto hash = token_.wrap_mechanism(request.recovery_key_id);
  if (!hash) return unexpected(hash.error());
  RecoveryBundle b;
  std::uint8_t random_id[16];
  if (auto r = vault_.random(random_id); !r) return unexpected(r.error());
  b.id = hex_lower(random_id);
  b.created_at = unix_seconds(clock_.now());
  b.daemon_version = identity_.daemon_version;
  b.instance_id = identity_.instance_id;
  b.recovery_key_id = request.recovery_key_id;
  b.mechanism = hash->name;
  auto approvers = store_.approvers(request_id);
  if (!approvers) return unexpected(approvers.error());
  b.approved_by = std::move(*approvers);
  for (const auto& name : request.keys) {
    auto key = registry_.find(name);
    if (!key) return fail(Code::not_found, "no key named '" + name + "'");
    if (!key->recovery) return fail(Code::failed_precondition, "key '" + name + "' was not created for recovery");
    BundleKey k;
    k.name = key->name;
    k.algorithm = key->algorithm;
    k.state = key->state;
    k.policy = policy_to_json(key->policy);
    k.current_version = key->current_version;
    k.min_decrypt_version = key->min_decrypt_version;
    for (const auto& v : key->versions) {
      BundleVersion bv;
      bv.version = v.version;
      bv.state = v.state == "destroyed" ? "destroyed" : "enabled";
      bv.origin = v.origin;
      bv.created_at = v.created_at;
      if (bv.state != "destroyed") {
        auto wrapped = token_.wrap(request.recovery_key_id, *hash, v.object);
        if (!wrapped) return unexpected(wrapped.error());
        bv.wrapped = std::move(*wrapped);
        auto sample = make_sample(vault_, key->name, key->algorithm, v);
        if (!sample) return unexpected(sample.error());
        bv.sample = std::move(*sample);
      }
      k.versions.push_back(std::move(bv));
    }
    b.keys.push_back(std::move(k));
  }
  BundleEnvelope envelope;
  envelope.bundle = encode_bundle(b);
  auto signature = signer_.sign(envelope.bundle);
  if (!signature) return unexpected(signature.error());
  envelope.signature = std::move(*signature);
  envelope.public_key_pem = signer_.public_key_pem();
  envelope.key_id = signer_.key_id();
  if (auto r = store_.insert_recovery_bundle(b.id, b.created_at, boost::json::serialize(envelope_to_json(envelope)), request_id); !r)
    return unexpected(r.error());
  return boost::json::object{{"recovery_bundle", summary(b)}};
}

Outcome<boost::json::object> Recovery::bundle(const std::string& id) {
  auto stored = store_.recovery_bundle(id);
  if (!stored) return unexpected(stored.error());
  if (!*stored) return fail(Code::not_found, "no recovery bundle " + id);
  boost::system::error_code ec;
  auto v = boost::json::parse(**stored, ec);
  if (ec || !v.is_object()) return fail(Code::internal, "stored recovery bundle " + id + " is unreadable");
  return std::move(v.as_object());
}

boost::json::object Recovery::export_result(const std::string& request_id) {
  auto id = store_.recovery_bundle_of_request(request_id);
  if (!id || !*id) return {};
  auto envelope = bundle(**id);
  if (!envelope) return {};
  auto parsed = parse_envelope(*envelope);
  if (!parsed) return {};
  auto b = parse_bundle(parsed->bundle);
  if (!b) return {};
  return {{"recovery_bundle", summary(*b)}};
}

}  // namespace custody::core
