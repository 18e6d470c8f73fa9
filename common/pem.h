#pragma once
// Public keys in PEM (SubjectPublicKeyInfo) and SHA-256 signature checks, with OpenSSL: the one
// place operators' keys, the attestation key and report signatures are read and verified.
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "common/expected.h"

typedef struct evp_pkey_st EVP_PKEY;

namespace custody {

// Null when the text is not a PEM public key (or OpenSSL could not allocate).
std::shared_ptr<EVP_PKEY> read_public_key_pem(std::string_view pem);
// The PEM of key, or why OpenSSL could not write it.
Expected<std::string, std::string> public_key_pem(const EVP_PKEY* key);
// ECDSA (DER) or RSA PKCS#1 v1.5 over SHA-256 of message. False for any failure.
bool verify_sha256_signature(EVP_PKEY* key, std::string_view message, std::span<const std::uint8_t> signature);

}  // namespace custody
