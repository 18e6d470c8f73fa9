#pragma once
// custody's ciphertextMetadata and the AAD the token sees (spec "Encrypt"):
//   ciphertextMetadata = u8 format (0x01) || u32be key_version           (5 bytes; the spec allows 20)
//   token AAD          = u16be len(aad) || aad || u8 len(cm) || cm
//   CDIV               = SHA-256(aad || cm || iv || ciphertext || tag)
// The format byte lets a later layout be told apart, and the version keeps ciphertexts made before a
// rotation decryptable. Transport-free and token-free: unit tests and the fuzzer call it directly.
#include <cstdint>
#include <optional>
#include <span>

#include "common/secure_buffer.h"

namespace custody::xks {

inline constexpr std::uint8_t kMetadataFormatV1 = 0x01;
inline constexpr std::size_t kMetadataBytes = 5;
inline constexpr std::size_t kMaxAadBytes = 8192;
inline constexpr std::size_t kMaxPlaintextBytes = 4300;
inline constexpr std::size_t kIvBytes = 12;
inline constexpr std::size_t kTagBytes = 16;

Bytes encode_metadata(std::uint32_t key_version);
// The key version of a v1 metadata; nullopt for any other length or format.
std::optional<std::uint32_t> decode_metadata(std::span<const std::uint8_t> metadata);

Bytes token_aad(std::span<const std::uint8_t> aad, std::span<const std::uint8_t> metadata);

// Empty only when OpenSSL failed (out of memory).
Bytes integrity_value(std::span<const std::uint8_t> aad, std::span<const std::uint8_t> metadata,
                      std::span<const std::uint8_t> iv, std::span<const std::uint8_t> ciphertext,
                      std::span<const std::uint8_t> tag);

}  // namespace custody::xks
