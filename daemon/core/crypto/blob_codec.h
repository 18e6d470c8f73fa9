#pragma once
// The aes-256-gcm ciphertext blob, version 1 (CONTRACT §4):
//   header = "CST" 0x01 || u8 len(name) || name || u32be key_version || iv(12)
//   blob   = header || gcm_ciphertext || tag(16);  AAD = header || ctx
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "common/secure_buffer.h"
#include "daemon/core/error.h"

namespace custody::core {

inline constexpr std::size_t kIvSize = 12;
inline constexpr std::size_t kTagSize = 16;

Bytes encode_blob_header(std::string_view key_name, std::uint32_t version, std::span<const std::uint8_t> iv);

struct ParsedBlob {
  std::string key_name;
  std::uint32_t version = 0;
  std::span<const std::uint8_t> header;  // views into the blob passed to parse_blob
  std::span<const std::uint8_t> iv;
  std::span<const std::uint8_t> ciphertext_and_tag;
};

Outcome<ParsedBlob> parse_blob(std::span<const std::uint8_t> blob);

// AAD = header || ctx
Bytes blob_aad(std::span<const std::uint8_t> header, std::span<const std::uint8_t> ctx);

}  // namespace custody::core
