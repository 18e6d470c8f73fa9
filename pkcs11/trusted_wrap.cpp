#include "pkcs11/trusted_wrap.h"

namespace custody::p11 {
namespace {

constexpr CK_BYTE kExponent[] = {0x01, 0x00, 0x01};

CK_RSA_PKCS_OAEP_PARAMS oaep_params(const OaepHash& h) { return {h.hash, h.mgf, CKZ_DATA_SPECIFIED, nullptr, 0}; }

}  // namespace

const OaepHash* find_oaep_hash(std::string_view name) {
  if (name == kOaepSha256.name) return &kOaepSha256;
  if (name == kOaepSha1.name) return &kOaepSha1;
  return nullptr;
}

Result<Bytes> wrap_key_oaep(Session& s, const OaepHash& hash, CK_OBJECT_HANDLE wrapping, CK_OBJECT_HANDLE key) {
  auto params = oaep_params(hash);
  CK_MECHANISM mech{CKM_RSA_PKCS_OAEP, &params, sizeof params};
  CK_ULONG len = 0;
  if (auto st = check(s.api()->C_WrapKey(s.handle(), &mech, wrapping, key, nullptr, &len), "C_WrapKey"); !st)
    return unexpected(st.error());
  if (len == 0 || len > 2048) return unexpected(own_fault(Fault::bad_reply, "C_WrapKey (implausible length)"));
  Bytes out(len);
  if (auto st = check(s.api()->C_WrapKey(s.handle(), &mech, wrapping, key, out.data(), &len), "C_WrapKey"); !st)
    return unexpected(st.error());
  out.resize(len);
  return out;
}

Result<OaepHash> probe_oaep_wrap(Session& s, CK_OBJECT_HANDLE wrapping) {
  AttributeTemplate t;
  t.add_ulong(CKA_CLASS, CKO_SECRET_KEY).add_ulong(CKA_KEY_TYPE, CKK_AES).add_ulong(CKA_VALUE_LEN, 32);
  t.add_bool(CKA_TOKEN, false).add_bool(CKA_SENSITIVE, true).add_bool(CKA_EXTRACTABLE, true);
  t.add_bool(CKA_ENCRYPT, false).add_bool(CKA_DECRYPT, false).add_bool(CKA_WRAP, false).add_bool(CKA_UNWRAP, false);
  auto probe = s.generate_key(CKM_AES_KEY_GEN, t);
  if (!probe) return unexpected(probe.error());
  Result<OaepHash> found = unexpected(own_fault(Fault::not_found, "C_WrapKey with RSA-OAEP SHA-256 or SHA-1"));
  for (const OaepHash& h : {kOaepSha256, kOaepSha1}) {
    auto wrapped = wrap_key_oaep(s, h, wrapping, *probe);
    if (wrapped) {
      found = h;
      break;
    }
    // Only "this hash is not supported" moves on to the next one; anything else is the answer.
    const CK_RV rv = wrapped.error().rv;
    if (wrapped.error().fault != Fault::token ||
        (rv != CKR_MECHANISM_PARAM_INVALID && rv != CKR_MECHANISM_INVALID && rv != CKR_ARGUMENTS_BAD &&
         rv != CKR_FUNCTION_FAILED)) {
      found = unexpected(wrapped.error());
      break;
    }
  }
  if (auto st = s.destroy_object(*probe); !st && found) return unexpected(st.error());
  return found;
}

Result<std::vector<CK_OBJECT_HANDLE>> find_trusted_keys(Session& s) {
  std::vector<CK_OBJECT_HANDLE> all;
  for (CK_OBJECT_CLASS cls : {CKO_PUBLIC_KEY, CKO_SECRET_KEY}) {
    AttributeTemplate t;
    t.add_ulong(CKA_CLASS, cls).add_bool(CKA_TRUSTED, true);
    auto found = s.find_all(t);
    if (!found) return unexpected(found.error());
    all.insert(all.end(), found->begin(), found->end());
  }
  return all;
}

Result<CK_OBJECT_HANDLE> find_trusted_public_key(Session& s, std::span<const std::uint8_t> id) {
  AttributeTemplate t;
  t.add_ulong(CKA_CLASS, CKO_PUBLIC_KEY).add_bytes(CKA_ID, id).add_bool(CKA_TRUSTED, true).add_bool(CKA_WRAP, true);
  return s.find_one(t, "the trusted recovery public key");
}

Result<CK_OBJECT_HANDLE> find_unwrapping_private_key(Session& s, std::span<const std::uint8_t> id) {
  AttributeTemplate t;
  t.add_ulong(CKA_CLASS, CKO_PRIVATE_KEY).add_bytes(CKA_ID, id).add_bool(CKA_UNWRAP, true);
  return s.find_one(t, "the recovery private key");
}

Result<RsaPublicKey> read_rsa_public_key(Session& s, CK_OBJECT_HANDLE key) {
  auto n = s.get_bytes(key, CKA_MODULUS);
  if (!n) return unexpected(n.error());
  auto e = s.get_bytes(key, CKA_PUBLIC_EXPONENT);
  if (!e) return unexpected(e.error());
  if (!*n || !*e) return unexpected(own_fault(Fault::bad_reply, "read an RSA public key (modulus or exponent missing)"));
  return RsaPublicKey{std::move(**n), std::move(**e)};
}

Result<std::pair<CK_OBJECT_HANDLE, CK_OBJECT_HANDLE>> generate_recovery_pair(Session& s, unsigned bits,
                                                                              std::span<const std::uint8_t> id,
                                                                              const std::string& label) {
  AttributeTemplate pub, priv;
  pub.add_ulong(CKA_CLASS, CKO_PUBLIC_KEY).add_ulong(CKA_KEY_TYPE, CKK_RSA).add_ulong(CKA_MODULUS_BITS, bits);
  pub.add_bytes(CKA_PUBLIC_EXPONENT, kExponent).add_bytes(CKA_ID, id).add_string(CKA_LABEL, label);
  pub.add_bool(CKA_TOKEN, true).add_bool(CKA_PRIVATE, false);
  pub.add_bool(CKA_WRAP, false).add_bool(CKA_ENCRYPT, false).add_bool(CKA_VERIFY, false);
  priv.add_ulong(CKA_CLASS, CKO_PRIVATE_KEY).add_ulong(CKA_KEY_TYPE, CKK_RSA).add_bytes(CKA_ID, id);
  priv.add_string(CKA_LABEL, label).add_bool(CKA_TOKEN, true).add_bool(CKA_PRIVATE, true);
  priv.add_bool(CKA_SENSITIVE, true).add_bool(CKA_EXTRACTABLE, false).add_bool(CKA_UNWRAP, true);
  priv.add_bool(CKA_DECRYPT, false).add_bool(CKA_SIGN, false).add_bool(CKA_DERIVE, false);
  return s.generate_key_pair(CKM_RSA_PKCS_KEY_PAIR_GEN, pub, priv);
}

Status set_object_id(Session& s, CK_OBJECT_HANDLE object, std::span<const std::uint8_t> id) {
  AttributeTemplate t;
  t.add_bytes(CKA_ID, id);
  return check(s.api()->C_SetAttributeValue(s.handle(), object, t.data(), t.size()), "C_SetAttributeValue(CKA_ID)");
}

Status login_so(Session& s, std::string_view so_pin) {
  CK_RV rv = s.api()->C_Login(s.handle(), CKU_SO, reinterpret_cast<CK_UTF8CHAR*>(const_cast<char*>(so_pin.data())),
                              so_pin.size());
  return check(rv, "C_Login(SO)");
}

Result<CK_OBJECT_HANDLE> import_trusted_public_key(Session& so, const RsaPublicKey& key, std::span<const std::uint8_t> id,
                                                   const std::string& label) {
  AttributeTemplate t;
  t.add_ulong(CKA_CLASS, CKO_PUBLIC_KEY).add_ulong(CKA_KEY_TYPE, CKK_RSA);
  t.add_bytes(CKA_MODULUS, key.modulus).add_bytes(CKA_PUBLIC_EXPONENT, key.exponent);
  t.add_bytes(CKA_ID, id).add_string(CKA_LABEL, label);
  // A public token object (an SO session cannot make private ones), trusted to wrap and nothing else.
  t.add_bool(CKA_TOKEN, true).add_bool(CKA_PRIVATE, false).add_bool(CKA_TRUSTED, true).add_bool(CKA_WRAP, true);
  t.add_bool(CKA_ENCRYPT, false).add_bool(CKA_VERIFY, false).add_bool(CKA_VERIFY_RECOVER, false).add_bool(CKA_DERIVE, false);
  return so.create_object(t);
}

}  // namespace custody::p11
