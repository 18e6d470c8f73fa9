#include "custody/client_error.h"

#include <array>
#include <utility>

namespace custody::client {

namespace {

constexpr std::array<std::pair<ErrorCode, std::string_view>, 17> kNames{{
    {ErrorCode::invalid_argument, "invalid_argument"},
    {ErrorCode::invalid_ciphertext, "invalid_ciphertext"},
    {ErrorCode::permission_denied, "permission_denied"},
    {ErrorCode::not_found, "not_found"},
    {ErrorCode::method_not_allowed, "method_not_allowed"},
    {ErrorCode::failed_precondition, "failed_precondition"},
    {ErrorCode::payload_too_large, "payload_too_large"},
    {ErrorCode::resource_exhausted, "resource_exhausted"},
    {ErrorCode::internal, "internal"},
    {ErrorCode::token_error, "token_error"},
    {ErrorCode::unavailable, "unavailable"},
    {ErrorCode::unknown_daemon_error, "unknown_daemon_error"},
    {ErrorCode::connection_failed, "connection_failed"},
    {ErrorCode::timeout, "timeout"},
    {ErrorCode::connection_lost, "connection_lost"},
    {ErrorCode::bad_reply, "bad_reply"},
    {ErrorCode::verification_failed, "verification_failed"},
}};

}  // namespace

std::string_view to_string(ErrorCode code) {
  for (const auto& [c, name] : kNames)
    if (c == code) return name;
  return "unknown";
}

ErrorCode daemon_error_code(std::string_view name) {
  // Only the daemon's own codes: a reply cannot pretend to be a client-side failure.
  for (const auto& [c, n] : kNames) {
    if (c == ErrorCode::unknown_daemon_error) break;
    if (n == name) return c;
  }
  return ErrorCode::unknown_daemon_error;
}

std::string Error::describe() const {
  std::string out(to_string(code));
  if (!message.empty()) out += ": " + message;
  if (!request_id.empty()) out += " (request " + request_id + ")";
  return out;
}

}  // namespace custody::client
