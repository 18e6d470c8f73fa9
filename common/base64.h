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
std::optional<SecureBytes> base64_decode(std::string_view text);

}  // namespace custody
