#pragma once
// The daemon's signing key: an EC P-256 key pair generated in the token at first start (private
// half sensitive, never extractable, sign only) and found again by label on later starts. It
// signs attestation reports and audit checkpoints: ECDSA over SHA-256, as DER, so plain OpenSSL
// verifies it (`openssl dgst -sha256 -verify`).
#include <mutex>
#include <string>
#include <string_view>

#include "daemon/core/error.h"
#include "pkcs11/session_pool.h"

namespace custody::core {

inline constexpr const char* kAttestationKeyLabel = "custody:attestation";

class AttestationKey {
 public:
  // Finds or makes the key pair; created is set when it was made now.
  static Expected<AttestationKey, std::string> open(p11::SessionPool& pool, bool& created);

  Outcome<Bytes> sign(std::string_view message) const;  // DER ECDSA-P256-SHA256
  const std::string& public_key_pem() const { return pem_; }
  const std::string& key_id() const { return key_id_; }  // hex SHA-256 of the SPKI DER

 private:
  p11::SessionPool* pool_ = nullptr;
  Bytes id_;  // CKA_ID of the pair
  std::string pem_;
  std::string key_id_;
};

}  // namespace custody::core
