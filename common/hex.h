#pragma once
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "common/expected.h"
#include "common/secure_buffer.h"

namespace custody {

std::string hex_lower(std::span<const std::uint8_t> data);
std::string hex_upper(std::span<const std::uint8_t> data);
std::optional<Bytes> hex_decode(std::string_view text);
// SHA-256 of data (lower-case hex: the form of the audit chain and config hash). A digest is an
// identity (audit chain, key ids, challenges), so OpenSSL failing (out of memory) is an error the
// caller handles, never a stand-in digest.
Expected<std::string, std::string> sha256_hex(std::span<const std::uint8_t> data);
Expected<Bytes, std::string> sha256(std::span<const std::uint8_t> data);

}  // namespace custody
