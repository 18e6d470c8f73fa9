#pragma once
// Errors on the request path are values. Each maps to one of the contract's codes (CONTRACT §1);
// the message is safe to send to the client: never key material, plaintext, PINs or pointers.
#include <string>

#include "common/expected.h"

namespace custody::core {

enum class Code {
  invalid_argument,
  invalid_ciphertext,
  permission_denied,
  not_found,
  method_not_allowed,
  failed_precondition,
  payload_too_large,
  resource_exhausted,
  internal,
  unavailable,
};

struct Error {
  Code code = Code::internal;
  std::string message;
};

template <class T>
using Outcome = Expected<T, Error>;

const char* code_name(Code code);
int http_status(Code code);

inline Unexpected<Error> fail(Code code, std::string message) { return {Error{code, std::move(message)}}; }

}  // namespace custody::core
