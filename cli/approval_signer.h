#pragma once
// Signs an admin request's challenge for an approval: SHA-256 of the challenge bytes, signed
// with ECDSA (DER, as `openssl dgst -sha256 -sign` and `pkcs11-tool --signature-format openssl`
// write it) or RSA-PSS (SHA-256, MGF1-SHA-256, 32-byte salt). The key is a PEM file (offline) or
// a private key on the operator's own PKCS#11 token, which never leaves it.
#include <optional>
#include <string>

#include "common/expected.h"
#include "common/secure_buffer.h"

namespace custody::client {

Expected<Bytes, std::string> sign_with_key_file(const std::string& pem_path, const std::string& challenge);

struct TokenKey {
  std::string module;
  std::optional<std::string> token_label;
  std::optional<std::string> token_serial;
  std::string key_label = "approval";
  SecureString pin;
};
Expected<Bytes, std::string> sign_with_token(const TokenKey& key, const std::string& challenge);

}  // namespace custody::client
