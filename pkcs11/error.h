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

// Who decided that a call failed. Only Fault::token carries a CK_RV the token returned; the rest
// are custody's own findings, kept apart so that no code of a real token (a vendor-defined one
// included) is ever read as one of them.
enum class Fault {
  token,           // the token answered rv
  pool_timeout,    // no session became free in time: the pool is saturated
  pool_resetting,  // the module is being reset after a device error: leases are draining
  not_found,       // no object matches
  not_unique,      // more than one object matches where one was expected (a copy of a key)
  bad_reply,       // the token said CKR_OK but what it returned cannot be used (missing attribute, bad key)
};

struct P11Error {
  CK_RV rv = CKR_OK;     // meaningful only for Fault::token
  std::string function;  // the C_* call (or custody step) that failed, for logs
  Fault fault = Fault::token;
  Severity severity() const;
  std::string describe() const;  // "C_Decrypt: CKR_ENCRYPTED_DATA_INVALID (0x40)"
};

inline P11Error own_fault(Fault fault, std::string function) { return P11Error{CKR_OK, std::move(function), fault}; }

template <class T>
using Result = Expected<T, P11Error>;
using Status = Expected<void, P11Error>;

const char* rv_name(CK_RV rv);

// The single funnel for every C_* return value.
inline Status check(CK_RV rv, const char* function) {
  if (rv == CKR_OK) return {};
  return unexpected(P11Error{rv, function});
}

}  // namespace custody::p11
