#include "daemon/kms/grpc_status.h"

namespace custody::kms {

grpc::StatusCode grpc_code(core::Code code) {
  switch (code) {
    case core::Code::invalid_argument:
    case core::Code::invalid_ciphertext:
      return grpc::StatusCode::INVALID_ARGUMENT;
    case core::Code::permission_denied: return grpc::StatusCode::PERMISSION_DENIED;
    case core::Code::not_found: return grpc::StatusCode::NOT_FOUND;
    case core::Code::method_not_allowed: return grpc::StatusCode::UNIMPLEMENTED;
    case core::Code::failed_precondition: return grpc::StatusCode::FAILED_PRECONDITION;
    // gRPC's own answer to a message over the receive limit.
    case core::Code::payload_too_large:
    case core::Code::resource_exhausted:
      return grpc::StatusCode::RESOURCE_EXHAUSTED;
    case core::Code::unavailable: return grpc::StatusCode::UNAVAILABLE;
    case core::Code::internal: break;
  }
  return grpc::StatusCode::INTERNAL;
}

grpc::Status grpc_status(const core::Error& error) {
  // The code name leads, as in the JSON error, so that logs of either socket read alike.
  return grpc::Status(grpc_code(error.code), std::string(core::code_name(error.code)) + ": " + error.message);
}

}  // namespace custody::kms
