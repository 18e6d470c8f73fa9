#include "daemon/transport/http_response.h"

#include <boost/beast/http/status.hpp>

namespace custody::transport {

void render_response(const service::Response& response, std::string_view request_id, bool keep_alive, std::string& out) {
  const auto reason = boost::beast::http::obsolete_reason(static_cast<boost::beast::http::status>(response.status));
  out.append("HTTP/1.1 ").append(std::to_string(response.status)).append(" ").append(reason.data(), reason.size());
  out.append("\r\nContent-Type: ").append(response.content_type);
  out.append("\r\nContent-Length: ").append(std::to_string(response.body.size()));
  out.append("\r\nX-Request-Id: ").append(request_id);
  if (response.status == 429 || response.status == 503)
    out.append("\r\nRetry-After: ").append(std::to_string(kRetryAfterSeconds));
  if (!keep_alive) out.append("\r\nConnection: close");
  out.append("\r\n\r\n");
  out.append(response.body.data(), response.body.size());
}

}  // namespace custody::transport
