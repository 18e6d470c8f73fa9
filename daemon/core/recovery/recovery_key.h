#pragma once
// The recovery key pair's public half as people and files see it: PEM (SubjectPublicKeyInfo) and
// its key_id, the lower-case hex SHA-256 of the SPKI DER (CONTRACT §11). The token objects of the
// pair carry the 32 bytes of that digest as CKA_ID, so both tokens find them by key_id.
#include <string>
#include <string_view>

#include "common/expected.h"
#include "common/secure_buffer.h"
#include "pkcs11/trusted_wrap.h"

namespace custody::core {

Expected<std::string, std::string> rsa_public_key_pem(const p11::RsaPublicKey& key);
// An RSA public key of at least p11::kMinRecoveryKeyBits bits from PEM; the message says why not.
Expected<p11::RsaPublicKey, std::string> rsa_public_key_from_pem(std::string_view pem);
// hex SHA-256 of the SPKI DER of the PEM public key (any type).
Expected<std::string, std::string> public_key_id(std::string_view pem);
// The CKA_ID for a key_id: its 32 bytes; nullopt unless key_id is 64 hex digits.
std::optional<Bytes> recovery_object_id(std::string_view key_id);
// The CKA_LABEL the recovery objects carry (never "custody:": those are custody keys).
std::string recovery_object_label(std::string_view key_id);

}  // namespace custody::core
