#include "common/byok_payload.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rsa.h>

#include <climits>

#include "common/hex.h"
#include "common/openssl_ptr.h"
#include "common/pem.h"
#include "common/random.h"

namespace custody::byok {

Expected<Bytes, std::string> kwp_wrap(std::span<const std::uint8_t> kek, std::span<const std::uint8_t> key) {
  if (kek.size() != 32) return unexpected(std::string("the wrapping key must be 32 bytes"));
  if (key.empty() || key.size() > 4096) return unexpected(std::string("the key to wrap must be 1 to 4096 bytes"));
  ossl::CipherCtx ctx(EVP_CIPHER_CTX_new());
  if (!ctx) return unexpected(std::string("OpenSSL cannot allocate a cipher context"));
  EVP_CIPHER_CTX_set_flags(ctx.get(), EVP_CIPHER_CTX_FLAG_WRAP_ALLOW);
  Bytes out(key.size() + 16);
  int len = 0, fin = 0;
  if (EVP_EncryptInit_ex(ctx.get(), EVP_aes_256_wrap_pad(), nullptr, kek.data(), nullptr) != 1 ||
      EVP_EncryptUpdate(ctx.get(), out.data(), &len, key.data(), static_cast<int>(key.size())) != 1 || len < 0 ||
      EVP_EncryptFinal_ex(ctx.get(), out.data() + len, &fin) != 1 || fin < 0 ||
      static_cast<std::size_t>(len + fin) > out.size())
    return unexpected(std::string("OpenSSL cannot AES-KWP wrap the key"));
  out.resize(static_cast<std::size_t>(len + fin));
  return out;
}

Expected<Bytes, std::string> rsa_oaep_encrypt(const std::string& public_key_pem, const std::string& hash,
                                              std::span<const std::uint8_t> data) {
  if (hash != "sha1" && hash != "sha256") return unexpected("no RSA-OAEP with hash " + hash);
  auto key = read_public_key_pem(public_key_pem);
  if (!key || !EVP_PKEY_is_a(key.get(), "RSA")) return unexpected(std::string("the job's public key is not an RSA PEM public key"));
  ossl::PKeyCtx ctx(EVP_PKEY_CTX_new(key.get(), nullptr));
  if (!ctx) return unexpected(std::string("OpenSSL cannot allocate an RSA context"));
  const EVP_MD* md = hash == "sha1" ? EVP_sha1() : EVP_sha256();
  std::size_t len = 0;
  if (EVP_PKEY_encrypt_init(ctx.get()) != 1 || EVP_PKEY_CTX_set_rsa_padding(ctx.get(), RSA_PKCS1_OAEP_PADDING) != 1 ||
      EVP_PKEY_CTX_set_rsa_oaep_md(ctx.get(), md) != 1 || EVP_PKEY_CTX_set_rsa_mgf1_md(ctx.get(), md) != 1 ||
      EVP_PKEY_encrypt(ctx.get(), nullptr, &len, data.data(), data.size()) != 1 || len == 0)
    return unexpected(std::string("OpenSSL cannot set up RSA-OAEP"));
  Bytes out(len);
  if (EVP_PKEY_encrypt(ctx.get(), out.data(), &len, data.data(), data.size()) != 1 || len == 0 || len > out.size())
    return unexpected(std::string("OpenSSL cannot RSA-OAEP encrypt"));
  out.resize(len);
  return out;
}

Expected<Bytes, std::string> rsa_aes_kwp_payload(const std::string& public_key_pem, const std::string& hash,
                                                 std::span<const std::uint8_t> key) {
  SecureBytes e(32);
  if (auto random = fill_random(e); !random) return unexpected("no ephemeral key E: " + random.error());
  auto wrapped_e = rsa_oaep_encrypt(public_key_pem, hash, e);
  if (!wrapped_e) return unexpected(wrapped_e.error());
  auto wrapped_k = kwp_wrap(e, key);
  if (!wrapped_k) return unexpected(wrapped_k.error());
  Bytes payload = std::move(*wrapped_e);
  payload.insert(payload.end(), wrapped_k->begin(), wrapped_k->end());
  return payload;
}

Expected<std::string, std::string> key_check_value(const std::string& algorithm, std::span<const std::uint8_t> key) {
  if (key.size() != 32) return unexpected(std::string("a check value needs the 32-byte key"));
  const std::uint8_t zeros[16] = {};
  SecureBytes out(EVP_MAX_MD_SIZE);
  if (algorithm == "hmac-sha256") {
    unsigned int len = 0;
    if (!HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), zeros, sizeof zeros, out.data(), &len) || len != 32)
      return unexpected(std::string("OpenSSL cannot compute HMAC-SHA256"));
  } else {
    ossl::CipherCtx ctx(EVP_CIPHER_CTX_new());
    int len = 0;
    if (!ctx || EVP_EncryptInit_ex(ctx.get(), EVP_aes_256_ecb(), nullptr, key.data(), nullptr) != 1 ||
        EVP_CIPHER_CTX_set_padding(ctx.get(), 0) != 1 ||
        EVP_EncryptUpdate(ctx.get(), out.data(), &len, zeros, sizeof zeros) != 1 || len != 16)
      return unexpected(std::string("OpenSSL cannot compute AES-256-ECB"));
  }
  return hex_upper(std::span<const std::uint8_t>(out.data(), 3));
}

}  // namespace custody::byok
