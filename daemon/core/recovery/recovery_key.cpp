#include "daemon/core/recovery/recovery_key.h"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/x509.h>

#include "common/hex.h"
#include "common/openssl_ptr.h"
#include "common/pem.h"

namespace custody::core {

Expected<std::string, std::string> rsa_public_key_pem(const p11::RsaPublicKey& key) {
  ossl::ParamBuilder bld(OSSL_PARAM_BLD_new());
  ossl::BigNum n(BN_bin2bn(key.modulus.data(), static_cast<int>(key.modulus.size()), nullptr));
  ossl::BigNum e(BN_bin2bn(key.exponent.data(), static_cast<int>(key.exponent.size()), nullptr));
  if (!bld || !n || !e) return unexpected(std::string("OpenSSL cannot allocate"));
  if (OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_N, n.get()) != 1 ||
      OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_E, e.get()) != 1)
    return unexpected(std::string("OpenSSL cannot take the modulus and exponent"));
  ossl::Params params(OSSL_PARAM_BLD_to_param(bld.get()));
  ossl::PKeyCtx ctx(EVP_PKEY_CTX_new_from_name(nullptr, "RSA", nullptr));
  if (!params || !ctx) return unexpected(std::string("OpenSSL cannot allocate"));
  EVP_PKEY* raw = nullptr;
  if (EVP_PKEY_fromdata_init(ctx.get()) != 1 || EVP_PKEY_fromdata(ctx.get(), &raw, EVP_PKEY_PUBLIC_KEY, params.get()) != 1)
    return unexpected(std::string("OpenSSL refuses the modulus and exponent"));
  const ossl::PKey pkey(raw);
  return public_key_pem(pkey.get());
}

Expected<p11::RsaPublicKey, std::string> rsa_public_key_from_pem(std::string_view pem) {
  auto key = read_public_key_pem(pem);
  if (!key) return unexpected(std::string("not a PEM public key"));
  if (!EVP_PKEY_is_a(key.get(), "RSA")) return unexpected(std::string("the recovery key must be RSA"));
  if (EVP_PKEY_get_bits(key.get()) < static_cast<int>(p11::kMinRecoveryKeyBits))
    return unexpected("the recovery key must have at least " + std::to_string(p11::kMinRecoveryKeyBits) + " bits");
  BIGNUM* n = nullptr;
  BIGNUM* e = nullptr;
  if (EVP_PKEY_get_bn_param(key.get(), OSSL_PKEY_PARAM_RSA_N, &n) != 1 ||
      EVP_PKEY_get_bn_param(key.get(), OSSL_PKEY_PARAM_RSA_E, &e) != 1) {
    BN_free(n);
    BN_free(e);
    return unexpected(std::string("cannot read the RSA modulus and exponent"));
  }
  const ossl::BigNum owned_n(n), owned_e(e);
  p11::RsaPublicKey out;
  out.modulus.resize(static_cast<std::size_t>(BN_num_bytes(n)));
  out.exponent.resize(static_cast<std::size_t>(BN_num_bytes(e)));
  BN_bn2bin(n, out.modulus.data());
  BN_bn2bin(e, out.exponent.data());
  return out;
}

Expected<std::string, std::string> public_key_id(std::string_view pem) {
  auto key = read_public_key_pem(pem);
  if (!key) return unexpected(std::string("not a PEM public key"));
  const ossl::Der der = ossl::encode_der(key.get(), i2d_PUBKEY);
  if (!der) return unexpected(std::string("cannot encode the public key"));
  return sha256_hex(der.bytes());
}

std::optional<Bytes> recovery_object_id(std::string_view key_id) {
  if (key_id.size() != 64) return std::nullopt;
  for (char c : key_id)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return std::nullopt;
  return hex_decode(key_id);
}

std::string recovery_object_label(std::string_view key_id) {
  return "custody-recovery:" + std::string(key_id.substr(0, 16));
}

}  // namespace custody::core
