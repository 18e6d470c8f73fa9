#pragma once
// A small blocking HTTP/1.1 client over a Unix socket: the transport under custody::client::Client
// (and custodyctl, the tests and the bench). Bounded: a reply larger than the limits, or one that
// does not complete within the timeout, is refused instead of growing memory or hanging.
#include <chrono>
#include <cstddef>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "common/expected.h"
#include "common/secure_buffer.h"
#include "custody/client_error.h"

namespace custody::client {

struct TransportLimits {
  std::size_t max_header_bytes = 16 * 1024;
  // A full batch of 256 derives of 1024 bytes is ≈ 360 KiB; key lists and metrics stay far below.
  std::size_t max_body_bytes = 16 * 1024 * 1024;
};

struct HttpReply {
  int status = 0;
  std::string body;
  std::string request_id;
  std::string content_type;
  std::optional<std::chrono::seconds> retry_after;
};

// The same, with the body in wiped memory: it may carry plaintext or key bytes (base64).
struct SecureHttpReply {
  int status = 0;
  SecureString body;
  std::string request_id;
  std::string content_type;
  std::optional<std::chrono::seconds> retry_after;
};

// The Retry-After header's delay in seconds (CONTRACT §1), when it is one (at most an hour).
std::optional<std::chrono::seconds> parse_retry_after(std::string_view value);

class UnixHttpClient {
 public:
  explicit UnixHttpClient(std::string socket_path, std::chrono::milliseconds timeout = std::chrono::seconds(30),
                          TransportLimits limits = {});
  ~UnixHttpClient();
  UnixHttpClient(const UnixHttpClient&) = delete;
  UnixHttpClient& operator=(const UnixHttpClient&) = delete;

  // Keeps the connection open between calls; reconnects once if the daemon closed it. For tools
  // and tests: it may send a request twice when a kept-alive connection breaks mid-call.
  Expected<HttpReply, std::string> call(const std::string& method, const std::string& target, const std::string& body = "",
                                        const std::map<std::string, std::string>& headers = {});

  // One request with errors as values. A kept-alive connection the daemon has closed is noticed
  // before the request is written; after it is written, the request is sent again only when
  // replayable (a lost answer to a non-replayable request is ErrorCode::connection_lost).
  Expected<SecureHttpReply, Error> exchange(std::string_view method, std::string_view target, std::string_view body,
                                            const std::map<std::string, std::string>& headers, bool replayable);

  const std::string& socket_path() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace custody::client
