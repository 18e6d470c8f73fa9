#pragma once
// A minimal keep-alive HTTP/1.1 client connection over a Unix socket, cheap enough that the
// load generator measures the daemon and not itself: the caller passes the request's exact bytes
// (built once), the response is read into a buffer reused from call to call, and only the status
// line, Content-Length and Connection: close are looked at.
#include <chrono>
#include <string>
#include <string_view>

#include "common/expected.h"

namespace custody::bench {

class HttpConnection {
 public:
  explicit HttpConnection(std::string socket_path) : path_(std::move(socket_path)) {}
  ~HttpConnection();
  HttpConnection(const HttpConnection&) = delete;
  HttpConnection& operator=(const HttpConnection&) = delete;
  HttpConnection(HttpConnection&& other) noexcept;

  Expected<void, std::string> connect();
  // Sends the request and reads one response: its status, or why there is none. Connects first
  // when not connected; a connection the daemon closes is reopened on the next call.
  Expected<int, std::string> round_trip(std::string_view request);
  // The body of the last response.
  std::string_view body() const { return std::string_view(buffer_).substr(body_offset_, body_size_); }

 private:
  void close();
  std::string path_;
  int fd_ = -1;
  std::string buffer_;
  std::size_t body_offset_ = 0, body_size_ = 0;
};

// The bytes of a POST with a JSON body (or a GET when body is empty and method says so).
std::string http_request(std::string_view method, std::string_view target, std::string_view body);

}  // namespace custody::bench
