#pragma once
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "common/secure_buffer.h"

namespace custody {

std::string hex_lower(std::span<const std::uint8_t> data);
std::string hex_upper(std::span<const std::uint8_t> data);
std::optional<Bytes> hex_decode(std::string_view text);
// SHA-256 of data, lower-case hex: the digest form used by the audit chain and config hash.
std::string sha256_hex(std::span<const std::uint8_t> data);
Bytes sha256(std::span<const std::uint8_t> data);

}  // namespace custody
