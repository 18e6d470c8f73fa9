#pragma once
// What the token can do, from C_GetMechanismList/C_GetMechanismInfo. Custody offers a feature only
// when the token has the mechanism with the right flags, never by assuming a vendor.
#include <unordered_map>

#include "pkcs11/error.h"

namespace custody::p11 {

class Capabilities {
 public:
  static Result<Capabilities> probe(CK_FUNCTION_LIST* api, CK_SLOT_ID slot);
  bool supports(CK_MECHANISM_TYPE mechanism, CK_FLAGS flags = 0) const;
  // True when the token can generate, encrypt and decrypt 256-bit AES-GCM keys.
  bool aes_gcm() const;
  bool hmac_sha256() const;
  std::size_t count() const { return mechanisms_.size(); }

 private:
  std::unordered_map<CK_MECHANISM_TYPE, CK_MECHANISM_INFO> mechanisms_;
};

}  // namespace custody::p11
