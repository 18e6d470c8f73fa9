#include "daemon/core/recovery/recovery_token.h"

#include <spdlog/spdlog.h>

#include "common/hex.h"
#include "daemon/core/keys/key_templates.h"
#include "daemon/core/keys/token_key_vault.h"
#include "daemon/core/recovery/recovery_key.h"
#include "daemon/core/recovery/recovery_sample.h"
#include "pkcs11/token_quirks.h"

namespace custody::core {
namespace {

Outcome<Bytes> object_id(const std::string& recovery_key_id) {
  auto id = recovery_object_id(recovery_key_id);
  if (!id) return fail(Code::invalid_argument, "recovery_key_id must be 64 lower-case hex digits");
  return std::move(*id);
}

bool refused_to_wrap(CK_RV rv) {
  return rv == CKR_KEY_NOT_WRAPPABLE || rv == CKR_KEY_UNEXTRACTABLE || rv == CKR_WRAPPING_KEY_HANDLE_INVALID ||
         rv == CKR_WRAPPING_KEY_TYPE_INCONSISTENT || rv == CKR_KEY_FUNCTION_NOT_PERMITTED;
}

// The session-object template of a drill: usable for the sample check only, gone with the session.
void fill_drill_template(p11::AttributeTemplate& t, Algorithm algorithm) {
  const bool aes = algorithm == Algorithm::aes_256_gcm;
  t.add_ulong(CKA_CLASS, CKO_SECRET_KEY).add_ulong(CKA_KEY_TYPE, aes ? CKK_AES : CKK_GENERIC_SECRET);
  t.add_bool(CKA_TOKEN, false).add_bool(CKA_PRIVATE, true).add_bool(CKA_SENSITIVE, true).add_bool(CKA_EXTRACTABLE, false);
  t.add_bool(CKA_ENCRYPT, false).add_bool(CKA_DECRYPT, aes).add_bool(CKA_SIGN, !aes).add_bool(CKA_VERIFY, false);
  t.add_bool(CKA_WRAP, false).add_bool(CKA_UNWRAP, false).add_bool(CKA_DERIVE, false);
}

}  // namespace

Outcome<p11::OaepHash> RecoveryToken::wrap_mechanism(const std::string& recovery_key_id) {
  auto id = object_id(recovery_key_id);
  if (!id) return unexpected(id.error());
  auto r = pool_.run<p11::OaepHash>([&](p11::Session& s) -> p11::Result<p11::OaepHash> {
    auto key = p11::find_trusted_public_key(s, *id);
    if (!key) return unexpected(key.error());
    return p11::probe_oaep_wrap(s, *key);
  });
  if (!r) {
    if (r.error().fault == p11::Fault::not_found && r.error().function != "C_WrapKey with RSA-OAEP SHA-256 or SHA-1")
      return fail(Code::failed_precondition, "the token holds no trusted wrapping key with key_id " + recovery_key_id +
                                                 " (the token's SO adds it with custodyctl recovery trust)");
    if (r.error().fault == p11::Fault::not_found)
      return fail(Code::failed_precondition, "the token wraps with neither RSA-OAEP SHA-256 nor SHA-1");
    return unexpected(token_error(r.error(), "recovery wrapping key lookup"));
  }
  return *r;
}

Outcome<Bytes> RecoveryToken::wrap(const std::string& recovery_key_id, const p11::OaepHash& hash, const ObjectRef& key) {
  auto id = object_id(recovery_key_id);
  if (!id) return unexpected(id.error());
  auto r = pool_.run<Bytes>([&](p11::Session& s) -> p11::Result<Bytes> {
    auto wrapping = p11::find_trusted_public_key(s, *id);
    if (!wrapping) return unexpected(wrapping.error());
    p11::AttributeTemplate t;
    t.add_ulong(CKA_CLASS, CKO_SECRET_KEY).add_bytes(CKA_ID, key.id);
    auto k = s.find_one(t, key.label);
    if (!k) return unexpected(k.error());
    return p11::wrap_key_oaep(s, hash, *wrapping, *k);
  });
  if (!r) {
    if (r.error().fault == p11::Fault::token && refused_to_wrap(r.error().rv))
      return fail(Code::failed_precondition, "the token refuses to wrap " + key.label + " under the recovery key (" +
                                                 r.error().describe() + "): it is not a recovery key");
    return unexpected(token_error(r.error(), "recovery wrap"));
  }
  return std::move(*r);
}

Outcome<void> RecoveryToken::require_unwrapping_key(const std::string& recovery_key_id) {
  auto id = object_id(recovery_key_id);
  if (!id) return unexpected(id.error());
  auto r = pool_.run<CK_OBJECT_HANDLE>([&](p11::Session& s) { return p11::find_unwrapping_private_key(s, *id); });
  if (!r) {
    if (r.error().fault == p11::Fault::not_found)
      return fail(Code::failed_precondition, "the token holds no recovery private key with key_id " + recovery_key_id +
                                                 " (made with custodyctl recovery init in this token)");
    return unexpected(token_error(r.error(), "recovery key lookup"));
  }
  return {};
}

Outcome<void> RecoveryToken::unwrap_into(const std::string& recovery_key_id, const p11::OaepHash& hash,
                                         const std::string& key_name, Algorithm algorithm, const BundleVersion& version,
                                         const ObjectRef& target, bool recovery) {
  auto id = object_id(recovery_key_id);
  if (!id) return unexpected(id.error());
  if (!version.wrapped || !version.sample)
    return fail(Code::invalid_argument, key_name + " v" + std::to_string(version.version) + " has no wrapped key");
  bool mismatch = false;
  auto r = pool_.run<bool>([&](p11::Session& s) -> p11::Result<bool> {
    mismatch = false;
    auto unwrapping = p11::find_unwrapping_private_key(s, *id);
    if (!unwrapping) return unexpected(unwrapping.error());
    CK_RSA_PKCS_OAEP_PARAMS params{hash.hash, hash.mgf, CKZ_DATA_SPECIFIED, nullptr, 0};
    CK_MECHANISM mech{CKM_RSA_PKCS_OAEP, &params, sizeof params};
    auto k = make_custody_key(algorithm, target, recovery, [&](p11::AttributeTemplate& t) {
      return s.unwrap_key(mech, *unwrapping, *version.wrapped, t);
    });
    if (!k) return unexpected(k.error());
    auto digest = sample_digest(s, pool_.quirks(), *k, algorithm, key_name, version.version, *version.sample);
    if (!digest || *digest != version.sample->sha256) {
      if (auto st = s.destroy_object(*k); !st)
        spdlog::error("recovery: cannot destroy {} after a failed check: {}", target.label, st.error().describe());
      if (!digest) return unexpected(digest.error());
      mismatch = true;
    }
    return true;
  });
  if (!r) {
    if (r.error().fault == p11::Fault::not_found)
      return fail(Code::failed_precondition, "the token holds no recovery private key with key_id " + recovery_key_id);
    if (r.error().fault == p11::Fault::token && r.error().function == "C_UnwrapKey" &&
        p11::quirks::is_unwrap_integrity_failure(pool_.quirks(), r.error().rv))
      return fail(Code::invalid_argument, key_name + " v" + std::to_string(version.version) +
                                              " does not unwrap with the recovery key (wrong key, mechanism or bytes)");
    return unexpected(token_error(r.error(), "recovery unwrap"));
  }
  if (mismatch)
    return fail(Code::invalid_argument, key_name + " v" + std::to_string(version.version) +
                                            ": the unwrapped key does not reproduce the bundle's sample");
  return {};
}

Outcome<std::string> RecoveryToken::drill(const std::string& recovery_key_id, const p11::OaepHash& hash,
                                          const std::string& key_name, Algorithm algorithm, const BundleVersion& version) {
  auto id = object_id(recovery_key_id);
  if (!id) return unexpected(id.error());
  if (!version.wrapped || !version.sample) return std::string("no wrapped key");
  std::string verdict;
  auto r = pool_.run<bool>([&](p11::Session& s) -> p11::Result<bool> {
    auto unwrapping = p11::find_unwrapping_private_key(s, *id);
    if (!unwrapping) return unexpected(unwrapping.error());
    CK_RSA_PKCS_OAEP_PARAMS params{hash.hash, hash.mgf, CKZ_DATA_SPECIFIED, nullptr, 0};
    CK_MECHANISM mech{CKM_RSA_PKCS_OAEP, &params, sizeof params};
    p11::AttributeTemplate t;
    fill_drill_template(t, algorithm);
    auto k = s.unwrap_key(mech, *unwrapping, *version.wrapped, t);
    if (!k) {
      if (k.error().fault == p11::Fault::token && p11::quirks::is_unwrap_integrity_failure(pool_.quirks(), k.error().rv)) {
        verdict = "does not unwrap with the recovery key";
        return true;
      }
      return unexpected(k.error());
    }
    auto digest = sample_digest(s, pool_.quirks(), *k, algorithm, key_name, version.version, *version.sample);
    // The drill changes nothing: the session object goes whatever the check said.
    auto destroyed = s.destroy_object(*k);
    if (!digest) return unexpected(digest.error());
    if (!destroyed) return unexpected(destroyed.error());
    verdict = *digest == version.sample->sha256 ? "" : "the unwrapped key does not reproduce the sample";
    return true;
  });
  if (!r) {
    if (r.error().fault == p11::Fault::not_found)
      return fail(Code::failed_precondition, "the token holds no recovery private key with key_id " + recovery_key_id);
    return unexpected(token_error(r.error(), "recovery drill"));
  }
  return verdict;
}

Outcome<std::vector<TrustedWrappingKey>> RecoveryToken::trusted_keys() {
  auto r = pool_.run<std::vector<TrustedWrappingKey>>([&](p11::Session& s) -> p11::Result<std::vector<TrustedWrappingKey>> {
    auto found = p11::find_trusted_keys(s);
    if (!found) return unexpected(found.error());
    std::vector<CK_ATTRIBUTE_TYPE> types;
    for (const auto& [name, type] : reported_attributes()) types.push_back(type);
    std::vector<TrustedWrappingKey> out;
    for (CK_OBJECT_HANDLE h : *found) {
      TrustedWrappingKey k;
      auto id = s.get_bytes(h, CKA_ID);
      if (!id) return unexpected(id.error());
      auto label = s.get_bytes(h, CKA_LABEL);
      if (!label) return unexpected(label.error());
      k.object.id = id->value_or(Bytes{});
      if (*label) k.object.label.assign((*label)->begin(), (*label)->end());
      auto values = s.get_bools(h, types);
      if (!values) return unexpected(values.error());
      for (const auto& [name, type] : reported_attributes()) k.attributes[name] = (*values)[type];
      if (auto rsa = p11::read_rsa_public_key(s, h)) {
        if (auto pem = rsa_public_key_pem(*rsa))
          if (auto key_id = public_key_id(*pem)) k.key_id = *key_id;
      }
      out.push_back(std::move(k));
    }
    return out;
  });
  if (!r) return unexpected(token_error(r.error(), "trusted key listing"));
  return std::move(*r);
}

}  // namespace custody::core
