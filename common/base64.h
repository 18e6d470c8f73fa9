#pragma once
// Standard base64 with padding (RFC 4648 §4), as CONTRACT §1 requires. Decoding is strict: no
// whitespace, no missing padding, no bits after the padding; anything else is refused.
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "common/secure_buffer.h"

namespace custody {

std::string base64_encode(std::span<const std::uint8_t> data);
// For callers that keep the encoding in their own (wiped) storage: exact size, then encode.
std::size_t base64_encoded_size(std::size_t n);
void base64_encode_into(std::span<const std::uint8_t> data, char* out);
std::optional<SecureBytes> base64_decode(std::string_view text);

}  // namespace custody
