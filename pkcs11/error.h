#pragma once
#include <string>

#include "common/expected.h"
#include "pkcs11/pkcs11.h"

namespace custody::p11 {

// How a failed call affects the session pool (DESIGN reliability rules).
enum class Severity {
  operation,  // the request failed; session and token are fine
  session,    // the session is unusable: evict it and open another
  device,     // the token or module is gone: reset the module
};

struct P11Error {
  CK_RV rv = CKR_OK;
  std::string function;  // the C_* call that failed, for logs
  Severity severity() const;
  std::string describe() const;  // "C_Decrypt: CKR_ENCRYPTED_DATA_INVALID (0x40)"
};

template <class T>
using Result = Expected<T, P11Error>;
using Status = Expected<void, P11Error>;

const char* rv_name(CK_RV rv);

// custody's own code for "no (single) object matches": not a token failure, no reason to retry.
inline constexpr CK_RV kObjectNotFound = CKR_VENDOR_DEFINED | 0xC057;

// The single funnel for every C_* return value.
inline Status check(CK_RV rv, const char* function) {
  if (rv == CKR_OK) return {};
  return unexpected(P11Error{rv, function});
}

}  // namespace custody::p11
