#pragma once
// OpenSSL as the independent implementation the tests check custody's results against.
#include <optional>
#include <span>

#include "common/secure_buffer.h"

namespace custody::test {

// RFC 5869 HKDF-Expand with SHA-256 (EVP_KDF HKDF, EXPAND_ONLY).
Bytes openssl_hkdf_expand(std::span<const std::uint8_t> prk, std::span<const std::uint8_t> info, std::size_t length);
// AES-256-GCM with a 16-byte tag appended; decrypt returns nullopt when the tag does not match.
Bytes openssl_gcm_encrypt(std::span<const std::uint8_t> key, std::span<const std::uint8_t> iv,
                          std::span<const std::uint8_t> aad, std::span<const std::uint8_t> plaintext);
std::optional<Bytes> openssl_gcm_decrypt(std::span<const std::uint8_t> key, std::span<const std::uint8_t> iv,
                                         std::span<const std::uint8_t> aad, std::span<const std::uint8_t> ct_and_tag);

}  // namespace custody::test
