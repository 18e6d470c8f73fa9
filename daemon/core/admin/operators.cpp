#include "daemon/core/admin/operators.h"

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include <vector>

#include "common/hex.h"
#include "common/openssl_ptr.h"
#include "common/pem.h"

namespace custody::core {

namespace {

ossl::BigNum bn_param(const EVP_PKEY* key, const char* name) {
  BIGNUM* bn = nullptr;
  const bool ok = EVP_PKEY_get_bn_param(key, name, &bn) == 1;
  ossl::BigNum owned(bn);
  if (!ok) return nullptr;
  return owned;
}

ossl::PKey key_from_data(const char* type, OSSL_PARAM* params) {
  ossl::PKeyCtx ctx(EVP_PKEY_CTX_new_from_name(nullptr, type, nullptr));
  if (!ctx || EVP_PKEY_fromdata_init(ctx.get()) != 1) return nullptr;
  EVP_PKEY* made = nullptr;
  const bool ok = EVP_PKEY_fromdata(ctx.get(), &made, EVP_PKEY_PUBLIC_KEY, params) == 1;
  ossl::PKey key(made);
  if (!ok) return nullptr;
  return key;
}

// One key has many SubjectPublicKeyInfo encodings: an EC point compressed, uncompressed or
// hybrid, the curve named or spelled out. The key is rebuilt from its numbers alone (the P-256
// point uncompressed with the named curve; RSA n and e), so that one key always has one
// encoding and one key_id, whatever the PEM it came in.
ossl::PKey canonical_key(const EVP_PKEY* key) {
  if (EVP_PKEY_is_a(key, "EC")) {
    auto x = bn_param(key, OSSL_PKEY_PARAM_EC_PUB_X);
    auto y = bn_param(key, OSSL_PKEY_PARAM_EC_PUB_Y);
    unsigned char point[65];
    point[0] = POINT_CONVERSION_UNCOMPRESSED;
    if (!x || !y || BN_bn2binpad(x.get(), point + 1, 32) != 32 || BN_bn2binpad(y.get(), point + 33, 32) != 32)
      return nullptr;
    char group[] = "prime256v1";
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, group, 0),
                           OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, point, sizeof point),
                           OSSL_PARAM_construct_end()};
    return key_from_data("EC", params);
  }
  auto n = bn_param(key, OSSL_PKEY_PARAM_RSA_N);
  auto e = bn_param(key, OSSL_PKEY_PARAM_RSA_E);
  if (!n || !e) return nullptr;
  // OSSL_PARAM_construct_BN takes native-endian unsigned bytes.
  std::vector<unsigned char> n_bytes(static_cast<std::size_t>(BN_num_bytes(n.get())));
  std::vector<unsigned char> e_bytes(static_cast<std::size_t>(BN_num_bytes(e.get())));
  if (BN_bn2nativepad(n.get(), n_bytes.data(), static_cast<int>(n_bytes.size())) < 0 ||
      BN_bn2nativepad(e.get(), e_bytes.data(), static_cast<int>(e_bytes.size())) < 0)
    return nullptr;
  OSSL_PARAM params[] = {OSSL_PARAM_construct_BN(OSSL_PKEY_PARAM_RSA_N, n_bytes.data(), n_bytes.size()),
                         OSSL_PARAM_construct_BN(OSSL_PKEY_PARAM_RSA_E, e_bytes.data(), e_bytes.size()),
                         OSSL_PARAM_construct_end()};
  return key_from_data("RSA", params);
}

}  // namespace

Expected<OperatorSet, std::string> OperatorSet::from_pem(const std::vector<std::pair<std::string, std::string>>& list) {
  std::vector<OperatorKey> keys;
  for (const auto& [name, pem] : list) keys.push_back({name, pem, ""});
  return from_keys(keys);
}

Expected<OperatorSet, std::string> OperatorSet::from_keys(const std::vector<OperatorKey>& list) {
  OperatorSet set;
  for (const auto& [name, pem, origin] : list) {
    const std::string who = "operator '" + name + "'" + (origin.empty() ? "" : " (" + origin + ")");
    auto parsed = read_public_key_pem(pem);
    if (!parsed) return unexpected(who + ": public_key is not a PEM public key (SubjectPublicKeyInfo)");
    EVP_PKEY* raw = parsed.get();
    if (EVP_PKEY_is_a(raw, "EC")) {
      char group[64] = {};
      std::size_t len = 0;
      if (EVP_PKEY_get_group_name(raw, group, sizeof group, &len) != 1 || std::string(group) != "prime256v1")
        return unexpected(who + ": EC keys must be P-256, not " + (group[0] ? group : "an unnamed curve"));
    } else if (EVP_PKEY_is_a(raw, "RSA")) {
      if (EVP_PKEY_get_bits(raw) < 2048) return unexpected(who + ": RSA keys must have at least 2048 bits");
    } else {
      return unexpected(who + ": the key must be EC P-256 or RSA");
    }
    auto canonical = canonical_key(raw);
    if (!canonical) return unexpected(who + ": cannot read the numbers of the public key");
    const ossl::Der der = ossl::encode_der(canonical.get(), i2d_PUBKEY);
    if (!der) return unexpected(who + ": cannot encode the public key");
    auto digest = sha256_hex(der.bytes());
    if (!digest) return unexpected(who + ": cannot compute the key id: " + digest.error());
    std::string id = std::move(*digest);
    std::shared_ptr<EVP_PKEY> key(canonical.release(), EVP_PKEY_free);  // frees the key itself if it throws
    for (const auto& other : set.operators_) {
      if (other.name == name) return unexpected("operator '" + name + "' is listed twice");
      // Compared as keys, not as encodings: one private key must never count as two operators.
      if (other.key_id == id || EVP_PKEY_eq(other.key.get(), key.get()) == 1)
        return unexpected("operators '" + other.name + "' and '" + name + "' share a key; each operator needs a key of their own" +
                          (origin.empty() ? "" : " (" + origin + ")"));
    }
    set.operators_.push_back(Operator{name, std::move(key), std::move(id)});
  }
  return set;
}

const Operator* OperatorSet::find(std::string_view name) const {
  for (const auto& op : operators_)
    if (op.name == name) return &op;
  return nullptr;
}

Outcome<void> OperatorSet::verify(const Operator& op, std::string_view challenge, std::span<const std::uint8_t> signature) {
  const bool rsa = EVP_PKEY_is_a(op.key.get(), "RSA");
  if (rsa) {
    if (signature.size() != static_cast<std::size_t>(EVP_PKEY_get_size(op.key.get())))
      return fail(Code::invalid_argument, "an RSA-PSS signature must be as long as the operator's modulus");
  } else {
    const unsigned char* p = signature.data();
    const ossl::EcdsaSig sig(d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(signature.size())));
    const bool whole = sig && p == signature.data() + signature.size();
    if (!whole) return fail(Code::invalid_argument, "the signature is not a DER ECDSA signature");
  }
  ossl::MdCtx ctx(EVP_MD_CTX_new());
  if (!ctx) return fail(Code::internal, "OpenSSL cannot allocate a digest context");
  EVP_PKEY_CTX* pctx = nullptr;  // owned by ctx
  int ok = EVP_DigestVerifyInit(ctx.get(), &pctx, EVP_sha256(), nullptr, op.key.get());
  if (ok == 1 && rsa) {
    ok = EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) == 1 &&
         EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, EVP_sha256()) == 1 &&
         EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_AUTO) == 1;
  }
  if (ok == 1)
    ok = EVP_DigestVerify(ctx.get(), signature.data(), signature.size(), reinterpret_cast<const unsigned char*>(challenge.data()),
                          challenge.size());
  if (ok != 1)
    return fail(Code::permission_denied, "the signature of operator '" + op.name + "' does not verify over this request's challenge");
  return {};
}

}  // namespace custody::core
