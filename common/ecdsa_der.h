#pragma once
// PKCS#11 returns an ECDSA signature as r || s; OpenSSL, approvals and reports use the DER
// ECDSA-Sig-Value.
#include <span>
#include <string>

#include "common/expected.h"
#include "common/secure_buffer.h"

namespace custody {

// raw is r || s, two halves of equal length; an error for anything else or when OpenSSL fails.
Expected<Bytes, std::string> ecdsa_signature_der(std::span<const std::uint8_t> raw);

}  // namespace custody
