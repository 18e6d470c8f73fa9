#pragma once
// PKCS#11 returns an ECDSA signature as r || s; OpenSSL, approvals and reports use the DER
// ECDSA-Sig-Value.
#include <span>

#include "common/secure_buffer.h"

namespace custody {

Bytes ecdsa_raw_to_der(std::span<const std::uint8_t> raw);

}  // namespace custody
