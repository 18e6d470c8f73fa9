#pragma once
// What a custody call can fail with, as a value: the daemon's error (CONTRACT §1: code, message,
// HTTP status, Retry-After) or the client's own (no connection, timeout, a reply it refuses).
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "common/expected.h"

namespace custody::client {

enum class ErrorCode {
  // The daemon's codes (CONTRACT §1).
  invalid_argument,
  invalid_ciphertext,
  permission_denied,
  not_found,
  method_not_allowed,
  failed_precondition,
  payload_too_large,
  resource_exhausted,
  internal,
  token_error,
  unavailable,
  unknown_daemon_error,  // an error status with a code this client does not know (a newer daemon)
  // The client's own.
  connection_failed,    // could not connect: the request was never sent
  timeout,              // no complete answer in time: the daemon may have run the request
  connection_lost,      // the connection broke after the request was sent: it may have run
  bad_reply,            // the answer is malformed, oversized or not what the contract promises
  verification_failed,  // an attestation whose signature or nonce does not check
};

std::string_view to_string(ErrorCode code);
// The daemon's code for a contract name; unknown_daemon_error for any other text.
ErrorCode daemon_error_code(std::string_view name);

struct Error {
  ErrorCode code = ErrorCode::internal;
  std::string message;
  int http_status = 0;     // 0 when no answer came
  std::string request_id;  // the daemon's X-Request-Id, when it answered
  std::optional<std::chrono::seconds> retry_after;
  std::string body;  // the raw error body the daemon sent (never holds key material), for diagnostics

  bool from_daemon() const { return http_status != 0; }
  // True when the daemon may have performed the request (and counted its usage) although no
  // answer arrived: the caller decides whether to repeat it.
  bool outcome_unknown() const { return code == ErrorCode::timeout || code == ErrorCode::connection_lost; }
  // The daemon said a later attempt can help (429, or 503 with Retry-After), or nothing reached it.
  bool retryable() const {
    return code == ErrorCode::connection_failed || code == ErrorCode::resource_exhausted ||
           (code == ErrorCode::unavailable && retry_after.has_value());
  }
  // "code: message (request R)", for logs.
  std::string describe() const;
};

template <class T>
using Result = Expected<T, Error>;

}  // namespace custody::client
