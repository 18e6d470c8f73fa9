#pragma once
// The XKS Proxy API's errors (spec "Error codes"): an errorName with its HTTP status, answered as
// {"errorName": N, "errorMessage": M} with M printable ASCII under 512 characters.
#include <string>

#include "daemon/core/error.h"
#include "daemon/service/request.h"

namespace custody::xks {

enum class ErrorName {
  ValidationException,
  InvalidStateException,
  InvalidCiphertextException,
  InvalidKeyUsageException,
  AuthenticationFailedException,
  AccessDeniedException,
  KeyNotFoundException,
  InvalidUriPathException,
  ThrottlingException,
  UnsupportedOperationException,
  DependencyTimeoutException,
  InternalException,
};

const char* error_name_text(ErrorName name);
int error_status(ErrorName name);

struct XksError {
  ErrorName name;
  std::string message;
};

service::Response error_response(const XksError& error);
// 405 for a method an API path does not serve: no errorName in the spec fits, so the closest.
service::Response method_not_allowed_response();

// A core error from the token or the store, as the errorName KMS should see.
XksError from_core(const core::Error& error);

}  // namespace custody::xks
