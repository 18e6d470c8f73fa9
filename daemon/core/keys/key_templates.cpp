#include "daemon/core/keys/key_templates.h"

namespace custody::core {

const std::vector<std::pair<std::string, CK_ATTRIBUTE_TYPE>>& reported_attributes() {
  static const std::vector<std::pair<std::string, CK_ATTRIBUTE_TYPE>> list = {
      {"token", CKA_TOKEN},
      {"private", CKA_PRIVATE},
      {"sensitive", CKA_SENSITIVE},
      {"always_sensitive", CKA_ALWAYS_SENSITIVE},
      {"extractable", CKA_EXTRACTABLE},
      {"never_extractable", CKA_NEVER_EXTRACTABLE},
      {"local", CKA_LOCAL},
      {"modifiable", CKA_MODIFIABLE},
      {"copyable", CKA_COPYABLE},
      {"destroyable", CKA_DESTROYABLE},
      {"encrypt", CKA_ENCRYPT},
      {"decrypt", CKA_DECRYPT},
      {"wrap", CKA_WRAP},
      {"unwrap", CKA_UNWRAP},
      {"sign", CKA_SIGN},
      {"verify", CKA_VERIFY},
      {"derive", CKA_DERIVE},
      {"trusted", CKA_TRUSTED},
      {"wrap_with_trusted", CKA_WRAP_WITH_TRUSTED},
  };
  return list;
}

CK_MECHANISM_TYPE generation_mechanism(Algorithm algorithm) {
  return algorithm == Algorithm::hmac_sha256 ? CKM_GENERIC_SECRET_KEY_GEN : CKM_AES_KEY_GEN;
}

void fill_key_template(p11::AttributeTemplate& t, Algorithm algorithm, const ObjectRef& ref,
                       bool set_modifiable_false, bool set_copyable_false, bool recovery) {
  const bool aes = algorithm == Algorithm::aes_256_gcm;
  const bool transport = algorithm == Algorithm::aes_256_kwp_transport;
  t.add_ulong(CKA_CLASS, CKO_SECRET_KEY)
      .add_ulong(CKA_KEY_TYPE, aes || transport ? CKK_AES : CKK_GENERIC_SECRET)
      .add_bytes(CKA_ID, ref.id)
      .add_string(CKA_LABEL, ref.label)
      .add_bool(CKA_TOKEN, true)
      .add_bool(CKA_PRIVATE, true)
      .add_bool(CKA_SENSITIVE, true)
      // A recovery key may leave the token, and then only under a key the SO marked trusted.
      .add_bool(CKA_EXTRACTABLE, recovery)
      // One role per key: never wrap/unwrap next to encrypt/decrypt/sign (Clulow).
      .add_bool(CKA_ENCRYPT, aes)
      .add_bool(CKA_DECRYPT, aes)
      .add_bool(CKA_SIGN, !aes && !transport)
      .add_bool(CKA_VERIFY, !aes && !transport)
      .add_bool(CKA_WRAP, false)
      // A transport key does one thing: unwrap keys migrated from a legacy HSM.
      .add_bool(CKA_UNWRAP, transport)
      .add_bool(CKA_DERIVE, false);
  if (recovery) t.add_bool(CKA_WRAP_WITH_TRUSTED, true);
  // No copy of a custody key may ever exist, in the token or out of it (DESIGN invariant 2).
  if (set_copyable_false) t.add_bool(CKA_COPYABLE, false);
  // Last: see p11::quirks::refuses_optional_restriction for why the order matters.
  if (set_modifiable_false) t.add_bool(CKA_MODIFIABLE, false);
}

std::vector<RequiredAttribute> required_attributes(Algorithm algorithm, bool generated, bool recovery) {
  const bool aes = algorithm == Algorithm::aes_256_gcm;
  const bool transport = algorithm == Algorithm::aes_256_kwp_transport;
  const bool mac = algorithm == Algorithm::hmac_sha256;
  std::vector<RequiredAttribute> r = {
      {"token", true},  {"private", true},     {"sensitive", true}, {"extractable", recovery},
      {"encrypt", aes}, {"decrypt", aes},      {"sign", mac},       {"verify", mac},
      {"wrap", false},  {"unwrap", transport}, {"derive", false},   {"copyable", false, true},
  };
  if (recovery) r.push_back({"wrap_with_trusted", true});
  if (generated) {
    r.push_back({"always_sensitive", true});
    r.push_back({"never_extractable", !recovery});
  }
  return r;
}

}  // namespace custody::core
