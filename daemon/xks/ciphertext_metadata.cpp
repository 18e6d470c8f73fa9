#include "daemon/xks/ciphertext_metadata.h"

#include <openssl/evp.h>
#include <openssl/sha.h>

namespace custody::xks {

Bytes encode_metadata(std::uint32_t v) {
  return {kMetadataFormatV1, static_cast<std::uint8_t>(v >> 24), static_cast<std::uint8_t>(v >> 16),
          static_cast<std::uint8_t>(v >> 8), static_cast<std::uint8_t>(v)};
}

std::optional<std::uint32_t> decode_metadata(std::span<const std::uint8_t> m) {
  if (m.size() != kMetadataBytes || m[0] != kMetadataFormatV1) return std::nullopt;
  return (std::uint32_t{m[1]} << 24) | (std::uint32_t{m[2]} << 16) | (std::uint32_t{m[3]} << 8) | m[4];
}

Bytes token_aad(std::span<const std::uint8_t> aad, std::span<const std::uint8_t> metadata) {
  Bytes out;
  out.reserve(3 + aad.size() + metadata.size());
  out.push_back(static_cast<std::uint8_t>(aad.size() >> 8));
  out.push_back(static_cast<std::uint8_t>(aad.size()));
  out.insert(out.end(), aad.begin(), aad.end());
  out.push_back(static_cast<std::uint8_t>(metadata.size()));
  out.insert(out.end(), metadata.begin(), metadata.end());
  return out;
}

Bytes integrity_value(std::span<const std::uint8_t> aad, std::span<const std::uint8_t> metadata,
                      std::span<const std::uint8_t> iv, std::span<const std::uint8_t> ciphertext,
                      std::span<const std::uint8_t> tag) {
  Bytes out(SHA256_DIGEST_LENGTH);
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  bool ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr) == 1;
  for (auto part : {aad, metadata, iv, ciphertext, tag})
    ok = ok && EVP_DigestUpdate(ctx, part.data(), part.size()) == 1;
  unsigned int n = 0;
  ok = ok && EVP_DigestFinal_ex(ctx, out.data(), &n) == 1;
  EVP_MD_CTX_free(ctx);
  if (!ok) out.clear();  // the caller refuses an empty value
  return out;
}

}  // namespace custody::xks
