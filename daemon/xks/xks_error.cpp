#include "daemon/xks/xks_error.h"

#include <boost/json/object.hpp>

#include "daemon/service/call.h"

namespace custody::xks {

const char* error_name_text(ErrorName name) {
  switch (name) {
    case ErrorName::ValidationException: return "ValidationException";
    case ErrorName::InvalidStateException: return "InvalidStateException";
    case ErrorName::InvalidCiphertextException: return "InvalidCiphertextException";
    case ErrorName::InvalidKeyUsageException: return "InvalidKeyUsageException";
    case ErrorName::AuthenticationFailedException: return "AuthenticationFailedException";
    case ErrorName::AccessDeniedException: return "AccessDeniedException";
    case ErrorName::KeyNotFoundException: return "KeyNotFoundException";
    case ErrorName::InvalidUriPathException: return "InvalidUriPathException";
    case ErrorName::ThrottlingException: return "ThrottlingException";
    case ErrorName::UnsupportedOperationException: return "UnsupportedOperationException";
    case ErrorName::DependencyTimeoutException: return "DependencyTimeoutException";
    case ErrorName::InternalException: return "InternalException";
  }
  return "InternalException";
}

int error_status(ErrorName name) {
  switch (name) {
    case ErrorName::ValidationException:
    case ErrorName::InvalidStateException:
    case ErrorName::InvalidCiphertextException:
    case ErrorName::InvalidKeyUsageException: return 400;
    case ErrorName::AuthenticationFailedException: return 401;
    case ErrorName::AccessDeniedException: return 403;
    case ErrorName::KeyNotFoundException:
    case ErrorName::InvalidUriPathException: return 404;
    case ErrorName::ThrottlingException: return 429;
    case ErrorName::UnsupportedOperationException: return 501;
    case ErrorName::DependencyTimeoutException: return 503;
    case ErrorName::InternalException: return 500;
  }
  return 500;
}

namespace {
// The spec: fewer than 512 characters, 0x20..0x7e only.
std::string printable(const std::string& message) {
  std::string out;
  for (char c : message) {
    if (out.size() == 511) break;
    out.push_back(c >= 0x20 && c <= 0x7e ? c : '?');
  }
  return out;
}
}  // namespace

service::Response error_response(const XksError& error) {
  boost::json::object body;
  body["errorName"] = error_name_text(error.name);
  body["errorMessage"] = printable(error.message);
  return service::json_response(error_status(error.name), body);
}

service::Response method_not_allowed_response() {
  boost::json::object body;
  body["errorName"] = "ValidationException";
  body["errorMessage"] = "the XKS API is served with POST only";
  return service::json_response(405, body);
}

XksError from_core(const core::Error& error) {
  switch (error.code) {
    case core::Code::invalid_ciphertext: return {ErrorName::InvalidCiphertextException, error.message};
    case core::Code::invalid_argument: return {ErrorName::ValidationException, error.message};
    case core::Code::payload_too_large: return {ErrorName::ValidationException, error.message};
    case core::Code::not_found: return {ErrorName::KeyNotFoundException, error.message};
    case core::Code::permission_denied: return {ErrorName::AccessDeniedException, error.message};
    case core::Code::failed_precondition: return {ErrorName::InvalidStateException, error.message};
    case core::Code::resource_exhausted: return {ErrorName::ThrottlingException, error.message};
    case core::Code::unavailable: return {ErrorName::DependencyTimeoutException, error.message};
    case core::Code::method_not_allowed:
    case core::Code::internal: break;
  }
  return {ErrorName::InternalException, error.message};
}

}  // namespace custody::xks
