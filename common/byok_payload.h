#pragma once
// The client side of a BYOK import (CONTRACT §8): the payload that wraps a customer's key K for an
// import job, and K's check value. Each OpenSSL step is checked: a failed random generator or
// cipher is an error, never a payload wrapped under a zero or unset key.
#include <span>
#include <string>

#include "common/expected.h"
#include "common/secure_buffer.h"

namespace custody::byok {

// AES-KWP (RFC 5649) of key under kek (32 bytes), the bytes `openssl enc -id-aes256-wrap-pad` makes.
Expected<Bytes, std::string> kwp_wrap(std::span<const std::uint8_t> kek, std::span<const std::uint8_t> key);
// RSA-OAEP with hash ("sha1" or "sha256") for the MGF1 too, no label, under a PEM public key.
Expected<Bytes, std::string> rsa_oaep_encrypt(const std::string& public_key_pem, const std::string& hash,
                                              std::span<const std::uint8_t> data);
// RSA-OAEP(E) || AES-KWP(E, key), E a fresh 32-byte key that never leaves this function.
Expected<Bytes, std::string> rsa_aes_kwp_payload(const std::string& public_key_pem, const std::string& hash,
                                                 std::span<const std::uint8_t> key);
// The first 3 bytes, upper-case hex, of HMAC-SHA256(key, 16 zero bytes) for "hmac-sha256",
// else of AES-256-ECB(key, 16 zero bytes).
Expected<std::string, std::string> key_check_value(const std::string& algorithm, std::span<const std::uint8_t> key);

}  // namespace custody::byok
