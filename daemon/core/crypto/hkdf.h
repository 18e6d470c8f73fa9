#pragma once
// HKDF-Expand (RFC 5869 §2.3) over an HMAC-SHA256 that runs elsewhere (in the token):
//   T(0) = empty; T(i) = HMAC(PRK, T(i-1) || info || i); OKM = first L bytes of T(1)..T(N).
#include <cstdint>
#include <functional>
#include <span>

#include "common/secure_buffer.h"
#include "daemon/core/error.h"

namespace custody::core {

using HmacFunction = std::function<Outcome<SecureBytes>(std::span<const std::uint8_t> message)>;

inline constexpr std::size_t kHkdfMaxLength = 255 * 32;

Outcome<SecureBytes> hkdf_expand(const HmacFunction& hmac_prk, std::span<const std::uint8_t> info,
                                 std::size_t length);

}  // namespace custody::core
