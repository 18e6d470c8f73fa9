#include "daemon/core/attestation/attestation_key.h"

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "common/ecdsa_der.h"
#include "common/hex.h"
#include "common/openssl_ptr.h"
#include "common/pem.h"
#include "common/random.h"
#include "daemon/core/keys/token_key_vault.h"
#include "pkcs11/token_quirks.h"

namespace custody::core {
namespace {

// DER of the named curve OID prime256v1 (1.2.840.10045.3.1.7), as CKA_EC_PARAMS wants it.
constexpr std::uint8_t kP256Params[] = {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};

p11::Result<CK_OBJECT_HANDLE> find_by_label(p11::Session& s, CK_OBJECT_CLASS cls) {
  p11::AttributeTemplate t;
  t.add_ulong(CKA_CLASS, cls).add_string(CKA_LABEL, kAttestationKeyLabel);
  return s.find_one(t, kAttestationKeyLabel);
}

// CKA_EC_POINT is a DER OCTET STRING around the uncompressed point (some tokens omit the wrapper).
Expected<Bytes, std::string> spki_from_ec_point(const Bytes& ec_point) {
  Bytes point = ec_point;
  if (point.size() > 2 && point[0] == 0x04 && point[1] == point.size() - 2) point.erase(point.begin(), point.begin() + 2);
  ossl::ParamBuilder bld(OSSL_PARAM_BLD_new());
  if (!bld || OSSL_PARAM_BLD_push_utf8_string(bld.get(), OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0) != 1 ||
      OSSL_PARAM_BLD_push_octet_string(bld.get(), OSSL_PKEY_PARAM_PUB_KEY, point.data(), point.size()) != 1)
    return unexpected(std::string("OpenSSL cannot build the attestation public key's parameters"));
  ossl::Params params(OSSL_PARAM_BLD_to_param(bld.get()));
  ossl::PKeyCtx ctx(EVP_PKEY_CTX_new_from_name(nullptr, "EC", nullptr));
  if (!params || !ctx) return unexpected(std::string("OpenSSL cannot allocate the attestation public key"));
  EVP_PKEY* made = nullptr;
  const bool ok = EVP_PKEY_fromdata_init(ctx.get()) == 1 &&
                  EVP_PKEY_fromdata(ctx.get(), &made, EVP_PKEY_PUBLIC_KEY, params.get()) == 1;
  ossl::PKey key(made);
  if (!ok || !key) return unexpected(std::string("the token's attestation public key is not a P-256 point"));
  const ossl::Der der = ossl::encode_der(key.get(), i2d_PUBKEY);
  if (!der) return unexpected(std::string("OpenSSL cannot encode the attestation public key"));
  return Bytes(der.bytes().begin(), der.bytes().end());
}

Expected<std::string, std::string> pem_of(const Bytes& spki) {
  const unsigned char* p = spki.data();
  ossl::PKey key(d2i_PUBKEY(nullptr, &p, static_cast<long>(spki.size())));
  if (!key) return unexpected(std::string("OpenSSL cannot read back the attestation public key"));
  return public_key_pem(key.get());
}

}  // namespace

Expected<AttestationKey, std::string> AttestationKey::open(p11::SessionPool& pool, bool& created) {
  auto lease = pool.acquire();
  if (!lease) return unexpected("token: " + lease.error().describe());
  auto& s = lease->session();
  created = false;
  auto pub = find_by_label(s, CKO_PUBLIC_KEY);
  auto priv = find_by_label(s, CKO_PRIVATE_KEY);
  // Only "no such object" means absent. Any other failure (a token error, two objects with the
  // label) stops here: read as absent, it would make a new key or blame a missing half.
  for (const auto* found : {&pub, &priv})
    if (!*found && found->error().fault != p11::Fault::not_found)
      return unexpected("cannot look for the attestation key: " + found->error().describe());
  if (!pub || !priv) {
    if (pub || priv) return unexpected(std::string("the token holds half of the attestation key pair; remove it or restore the other half"));
    Bytes id(16);
    if (auto random = fill_random(id); !random)
      return unexpected("no CKA_ID for the attestation key: " + random.error());
    auto generate = [&](bool not_copyable) {
      p11::AttributeTemplate pt, kt;
      pt.add_ulong(CKA_CLASS, CKO_PUBLIC_KEY).add_ulong(CKA_KEY_TYPE, CKK_EC).add_bytes(CKA_EC_PARAMS, kP256Params);
      pt.add_bytes(CKA_ID, id).add_string(CKA_LABEL, kAttestationKeyLabel).add_bool(CKA_TOKEN, true);
      pt.add_bool(CKA_VERIFY, true).add_bool(CKA_ENCRYPT, false).add_bool(CKA_WRAP, false).add_bool(CKA_DERIVE, false);
      kt.add_ulong(CKA_CLASS, CKO_PRIVATE_KEY).add_ulong(CKA_KEY_TYPE, CKK_EC).add_bytes(CKA_ID, id);
      kt.add_string(CKA_LABEL, kAttestationKeyLabel).add_bool(CKA_TOKEN, true).add_bool(CKA_PRIVATE, true);
      kt.add_bool(CKA_SENSITIVE, true).add_bool(CKA_EXTRACTABLE, false).add_bool(CKA_SIGN, true);
      kt.add_bool(CKA_DECRYPT, false).add_bool(CKA_UNWRAP, false).add_bool(CKA_DERIVE, false);
      if (not_copyable) {
        pt.add_bool(CKA_COPYABLE, false);
        kt.add_bool(CKA_COPYABLE, false);
      }
      return s.generate_key_pair(CKM_EC_KEY_PAIR_GEN, pt, kt);
    };
    auto pair = generate(true);
    if (!pair && p11::quirks::refuses_optional_restriction(pair.error().rv)) pair = generate(false);
    if (!pair) return unexpected("cannot generate the attestation key: " + pair.error().describe());
    pub = pair->first;
    priv = pair->second;
    created = true;
  }
  // Sign only, sensitive, never extractable, uncopyable (where the token reports CKA_COPYABLE, see
  // p11::quirks::refuses_optional_restriction): refuse to use a key that is anything else.
  const CK_ATTRIBUTE_TYPE checks[] = {CKA_SIGN,   CKA_SENSITIVE, CKA_EXTRACTABLE, CKA_DECRYPT,
                                      CKA_UNWRAP, CKA_DERIVE,    CKA_COPYABLE};
  auto attrs = s.get_bools(*priv, checks);
  if (!attrs) return unexpected("cannot read the attestation key: " + attrs.error().describe());
  auto is = [&](CK_ATTRIBUTE_TYPE t, bool want) { return (*attrs)[t].has_value() && *(*attrs)[t] == want; };
  if (!is(CKA_SIGN, true) || !is(CKA_SENSITIVE, true) || !is(CKA_EXTRACTABLE, false) || is(CKA_DECRYPT, true) ||
      is(CKA_UNWRAP, true) || is(CKA_DERIVE, true) || is(CKA_COPYABLE, true))
    return unexpected(std::string(
        "the token's attestation key is not a sensitive, non-extractable, uncopyable, sign-only key"));
  auto point = s.get_bytes(*pub, CKA_EC_POINT);
  auto id = s.get_bytes(*priv, CKA_ID);
  if (!point) return unexpected("cannot read the attestation public key: " + point.error().describe());
  if (!id) return unexpected("cannot read the attestation key's CKA_ID: " + id.error().describe());
  if (!*point || !*id) return unexpected(std::string("the token's attestation key has no CKA_EC_POINT or no CKA_ID"));
  auto spki = spki_from_ec_point(**point);
  if (!spki) return unexpected(spki.error());
  auto pem = pem_of(*spki);
  if (!pem) return unexpected(pem.error());
  AttestationKey k;
  k.pool_ = &pool;
  k.id_ = **id;
  k.pem_ = std::move(*pem);
  auto key_id = sha256_hex(*spki);
  if (!key_id) return unexpected("cannot compute the attestation key id: " + key_id.error());
  k.key_id_ = std::move(*key_id);
  return k;
}

Outcome<Bytes> AttestationKey::sign(std::string_view message) const {
  auto hashed = sha256(std::span(reinterpret_cast<const std::uint8_t*>(message.data()), message.size()));
  if (!hashed) return fail(Code::unavailable, "cannot make an attestation signature: " + hashed.error());
  const Bytes& digest = *hashed;
  auto raw = pool_->run<SecureBytes>([&](p11::Session& s) -> p11::Result<SecureBytes> {
    p11::AttributeTemplate t;
    t.add_ulong(CKA_CLASS, CKO_PRIVATE_KEY).add_bytes(CKA_ID, id_);
    auto key = s.find_one(t, kAttestationKeyLabel);
    if (!key) return unexpected(key.error());
    // The token signs the digest (CKM_ECDSA): tokens without CKM_ECDSA_SHA256 do this too.
    CK_MECHANISM mech{CKM_ECDSA, nullptr, 0};
    return s.sign(mech, *key, digest, 64);
  });
  if (raw) {
    auto der = ecdsa_signature_der(*raw);
    if (!der) return fail(Code::internal, "the token's attestation signature: " + der.error());
    return std::move(*der);
  }
  if (raw.error().fault == p11::Fault::not_found) return fail(Code::internal, "the attestation key is missing from the token");
  return unexpected(token_error(raw.error(), "attestation signature"));
}

}  // namespace custody::core
