#include "common/pem.h"

#include <openssl/evp.h>
#include <openssl/pem.h>

#include <climits>

#include "common/openssl_ptr.h"

namespace custody {

std::shared_ptr<EVP_PKEY> read_public_key_pem(std::string_view pem) {
  if (pem.size() > static_cast<std::size_t>(INT_MAX)) return nullptr;
  ossl::Bio bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (!bio) return nullptr;
  ossl::PKey key(PEM_read_bio_PUBKEY(bio.get(), nullptr, nullptr, nullptr));
  if (!key) return nullptr;
  return std::shared_ptr<EVP_PKEY>(key.release(), EVP_PKEY_free);  // frees the key itself if it throws
}

Expected<std::string, std::string> public_key_pem(const EVP_PKEY* key) {
  if (!key) return unexpected(std::string("no public key to write"));
  ossl::Bio bio(BIO_new(BIO_s_mem()));
  if (!bio) return unexpected(std::string("OpenSSL cannot allocate a memory BIO"));
  if (PEM_write_bio_PUBKEY(bio.get(), key) != 1) return unexpected(std::string("OpenSSL cannot write the public key as PEM"));
  char* data = nullptr;
  const long len = BIO_get_mem_data(bio.get(), &data);
  if (len <= 0 || !data) return unexpected(std::string("OpenSSL wrote an empty PEM"));
  return std::string(data, static_cast<std::size_t>(len));
}

bool verify_sha256_signature(EVP_PKEY* key, std::string_view message, std::span<const std::uint8_t> signature) {
  if (!key) return false;
  ossl::MdCtx ctx(EVP_MD_CTX_new());
  return ctx && EVP_DigestVerifyInit(ctx.get(), nullptr, EVP_sha256(), nullptr, key) == 1 &&
         EVP_DigestVerify(ctx.get(), signature.data(), signature.size(), reinterpret_cast<const unsigned char*>(message.data()),
                          message.size()) == 1;
}

}  // namespace custody
