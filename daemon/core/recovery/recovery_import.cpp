// Import on the recovery (DR) daemon (CONTRACT §11): the bundle verified against the primary's
// pinned attestation key, each key restored through the recovery private key with its samples
// checked.
#include <boost/json.hpp>

#include "daemon/core/keys/policy.h"
#include "daemon/core/recovery/recovery.h"
#include "daemon/core/recovery/recovery_sample.h"

namespace custody::core {

Outcome<ImportRequest> Recovery::check_import(const boost::json::object& params) {
  for (const auto& m : params)
    if (m.key() != "bundle" && m.key() != "attestation_public_key")
      return fail(Code::invalid_argument, "unknown field 'params." + std::string(m.key()) + "'");
  const auto* envelope = params.if_contains("bundle");
  if (!envelope) return fail(Code::invalid_argument, "'params.bundle' is required: the recovery bundle (envelope object)");
  const auto* pinned = params.if_contains("attestation_public_key");
  if (!pinned || !pinned->is_string())
    return fail(Code::invalid_argument, "'params.attestation_public_key' is required: the primary's attestation public key (PEM)");
  ImportRequest r;
  auto parsed = parse_envelope(*envelope);
  if (!parsed) return unexpected(parsed.error());
  r.envelope = std::move(*parsed);
  r.attestation_public_key = std::string(pinned->as_string());
  auto bundle = verify_envelope(r.envelope, r.attestation_public_key);
  if (!bundle) return unexpected(bundle.error());
  r.bundle = std::move(*bundle);
  if (!p11::find_oaep_hash(r.bundle.mechanism))
    return fail(Code::invalid_argument, "recovery bundle: unknown mechanism " + r.bundle.mechanism);
  if (auto ok = token_.require_unwrapping_key(r.bundle.recovery_key_id); !ok) return unexpected(ok.error());
  return r;
}

Outcome<void> Recovery::same_material(const Key& existing, const BundleKey& key) {
  auto differs = [&](const std::string& why) {
    return fail(Code::failed_precondition, "key '" + key.name + "' already exists with different material (" + why +
                                               "); nothing was restored");
  };
  if (existing.algorithm != key.algorithm) return differs(std::string("it is ") + algorithm_name(existing.algorithm));
  for (const auto& v : key.versions) {
    if (v.state == "destroyed" || !v.sample) continue;
    const KeyVersion* have = existing.find_version(v.version);
    if (!have || have->state == "destroyed") return differs("it has no live version " + std::to_string(v.version));
    auto digest = sample_digest(vault_, key.name, v.version, key.algorithm, have->object, *v.sample);
    if (!digest) {
      if (digest.error().code == Code::invalid_ciphertext) return differs("v" + std::to_string(v.version) + " does not open its sample");
      return unexpected(digest.error());
    }
    if (*digest != v.sample->sha256) return differs("v" + std::to_string(v.version) + " gives another sample");
  }
  return {};
}

Outcome<boost::json::object> Recovery::import_bundle(const ImportRequest& request) {
  const RecoveryBundle& b = request.bundle;
  const p11::OaepHash* hash = p11::find_oaep_hash(b.mechanism);
  if (!hash) return fail(Code::invalid_argument, "recovery bundle: unknown mechanism " + b.mechanism);
  // First every check, so that a refusal restores nothing.
  enum class Plan { restore, present, destroyed };
  std::vector<Plan> plans;
  for (const auto& k : b.keys) {
    if (k.state == KeyState::destroyed) {
      plans.push_back(Plan::destroyed);
      continue;
    }
    if (auto existing = registry_.find(k.name)) {
      if (auto same = same_material(*existing, k); !same) return unexpected(same.error());
      plans.push_back(Plan::present);
      continue;
    }
    plans.push_back(Plan::restore);
  }
  boost::json::array results;
  for (std::size_t i = 0; i < b.keys.size(); ++i) {
    const BundleKey& k = b.keys[i];
    if (plans[i] == Plan::destroyed) {
      // Crypto-shredded at the source: a bundle must not bring it back.
      results.push_back({{"name", k.name}, {"result", "refused"}, {"message", "the bundle marks the key destroyed"}});
      continue;
    }
    if (plans[i] == Plan::present) {
      results.push_back({{"name", k.name}, {"result", "already-present"}});
      continue;
    }
    auto policy = parse_policy(k.policy, false);
    if (!policy) return fail(Code::invalid_argument, "recovery bundle: key '" + k.name + "': " + policy.error().message);
    Key key;
    key.name = k.name;
    key.algorithm = k.algorithm;
    // A pending destruction has no date in the bundle: the key comes back disabled, to be decided again.
    key.state = k.state == KeyState::pending_destruction ? KeyState::disabled : k.state;
    key.current_version = k.current_version;
    key.min_decrypt_version = k.min_decrypt_version;
    key.created_at = k.versions.front().created_at;
    key.policy = std::move(*policy);
    key.recovery = true;
    for (const auto& v : k.versions) {
      KeyVersion kv;
      kv.version = v.version;
      kv.state = v.state;
      kv.origin = "recovered";
      kv.reason = "recovered";
      kv.created_at = v.created_at;
      key.versions.push_back(std::move(kv));
    }
    auto restored = admin_.restore_key(std::move(key), [&](const KeyVersion& v, const ObjectRef& target) {
      return token_.unwrap_into(b.recovery_key_id, *hash, k.name, k.algorithm, k.versions[v.version - 1], target, true);
    });
    if (!restored)
      return fail(restored.error().code, "key '" + k.name + "' is not restored: " + restored.error().message +
                                             (i > 0 ? " (keys before it in the bundle are; importing again skips them)" : ""));
    results.push_back({{"name", k.name}, {"result", "restored"}});
  }
  return boost::json::object{{"bundle_id", b.id}, {"keys", std::move(results)}};
}

}  // namespace custody::core
