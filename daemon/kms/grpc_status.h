#pragma once
// The contract's error codes (CONTRACT §1) as gRPC status codes, told apart the same way: retry
// UNAVAILABLE (token unreachable, audit not writable, saturation); never retry INVALID_ARGUMENT.
#include <grpcpp/support/status.h>

#include "daemon/core/error.h"

namespace custody::kms {

grpc::StatusCode grpc_code(core::Code code);
grpc::Status grpc_status(const core::Error& error);

}  // namespace custody::kms
