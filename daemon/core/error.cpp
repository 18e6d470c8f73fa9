#include "daemon/core/error.h"

namespace custody::core {

const char* code_name(Code code) {
  switch (code) {
    case Code::invalid_argument: return "invalid_argument";
    case Code::invalid_ciphertext: return "invalid_ciphertext";
    case Code::permission_denied: return "permission_denied";
    case Code::not_found: return "not_found";
    case Code::method_not_allowed: return "method_not_allowed";
    case Code::failed_precondition: return "failed_precondition";
    case Code::payload_too_large: return "payload_too_large";
    case Code::resource_exhausted: return "resource_exhausted";
    case Code::internal: return "internal";
    case Code::unavailable: return "unavailable";
  }
  return "internal";
}

int http_status(Code code) {
  switch (code) {
    case Code::invalid_argument:
    case Code::invalid_ciphertext: return 400;
    case Code::permission_denied: return 403;
    case Code::not_found: return 404;
    case Code::method_not_allowed: return 405;
    case Code::failed_precondition: return 409;
    case Code::payload_too_large: return 413;
    case Code::resource_exhausted: return 429;
    case Code::internal: return 500;
    case Code::unavailable: return 503;
  }
  return 500;
}

}  // namespace custody::core
