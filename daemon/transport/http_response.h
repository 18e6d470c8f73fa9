#pragma once
// HTTP/1.1 response bytes for a service::Response: status line, Content-Type, Content-Length,
// X-Request-Id, Retry-After on 429 and 503 (CONTRACT §1: a retry can help), Connection: close
// when the connection ends after it.
#include <string>
#include <string_view>

#include "daemon/service/request.h"

namespace custody::transport {

// Seconds a client is told to wait after a 429 or 503.
inline constexpr int kRetryAfterSeconds = 1;

// Appends the response to `out`, which the caller reuses and wipes (bodies carry secrets).
void render_response(const service::Response& response, std::string_view request_id, bool keep_alive, std::string& out);

inline constexpr std::string_view kContinueResponse = "HTTP/1.1 100 Continue\r\n\r\n";

}  // namespace custody::transport
