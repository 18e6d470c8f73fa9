#include "tests/support/openssl_oracle.h"

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>

namespace custody::test {

Bytes openssl_hkdf_expand(std::span<const std::uint8_t> prk, std::span<const std::uint8_t> info, std::size_t length) {
  EVP_KDF* kdf = EVP_KDF_fetch(nullptr, "HKDF", nullptr);
  EVP_KDF_CTX* ctx = EVP_KDF_CTX_new(kdf);
  int mode = EVP_KDF_HKDF_MODE_EXPAND_ONLY;
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, const_cast<char*>("SHA256"), 0),
      OSSL_PARAM_construct_int(OSSL_KDF_PARAM_MODE, &mode),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, const_cast<std::uint8_t*>(prk.data()), prk.size()),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, const_cast<std::uint8_t*>(info.data()), info.size()),
      OSSL_PARAM_construct_end()};
  Bytes out(length);
  if (EVP_KDF_derive(ctx, out.data(), out.size(), params) != 1) out.clear();
  EVP_KDF_CTX_free(ctx);
  EVP_KDF_free(kdf);
  return out;
}

Bytes openssl_gcm_encrypt(std::span<const std::uint8_t> key, std::span<const std::uint8_t> iv,
                          std::span<const std::uint8_t> aad, std::span<const std::uint8_t> plaintext) {
  EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
  Bytes out(plaintext.size() + 16);
  int len = 0;
  EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), nullptr, nullptr, nullptr);
  EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, static_cast<int>(iv.size()), nullptr);
  EVP_EncryptInit_ex(ctx, nullptr, nullptr, key.data(), iv.data());
  EVP_EncryptUpdate(ctx, nullptr, &len, aad.data(), static_cast<int>(aad.size()));
  EVP_EncryptUpdate(ctx, out.data(), &len, plaintext.data(), static_cast<int>(plaintext.size()));
  EVP_EncryptFinal_ex(ctx, out.data() + len, &len);
  EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, 16, out.data() + plaintext.size());
  EVP_CIPHER_CTX_free(ctx);
  return out;
}

std::optional<Bytes> openssl_gcm_decrypt(std::span<const std::uint8_t> key, std::span<const std::uint8_t> iv,
                                         std::span<const std::uint8_t> aad, std::span<const std::uint8_t> ct_and_tag) {
  if (ct_and_tag.size() < 16) return std::nullopt;
  EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
  Bytes out(ct_and_tag.size() - 16);
  int len = 0, ok = 1;
  ok &= EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), nullptr, nullptr, nullptr);
  ok &= EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, static_cast<int>(iv.size()), nullptr);
  ok &= EVP_DecryptInit_ex(ctx, nullptr, nullptr, key.data(), iv.data());
  ok &= EVP_DecryptUpdate(ctx, nullptr, &len, aad.data(), static_cast<int>(aad.size()));
  ok &= EVP_DecryptUpdate(ctx, out.data(), &len, ct_and_tag.data(), static_cast<int>(out.size()));
  ok &= EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, 16, const_cast<std::uint8_t*>(ct_and_tag.data() + out.size()));
  ok &= EVP_DecryptFinal_ex(ctx, out.data() + len, &len);
  EVP_CIPHER_CTX_free(ctx);
  if (ok != 1) return std::nullopt;
  return out;
}

}  // namespace custody::test
