#include "bench/http_connection.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <strings.h>

namespace custody::bench {

HttpConnection::~HttpConnection() { close(); }

HttpConnection::HttpConnection(HttpConnection&& other) noexcept
    : path_(std::move(other.path_)), fd_(other.fd_), buffer_(std::move(other.buffer_)) {
  other.fd_ = -1;
}

void HttpConnection::close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

Expected<void, std::string> HttpConnection::connect() {
  close();
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path_.size() >= sizeof addr.sun_path) return unexpected("socket path too long: " + path_);
  std::memcpy(addr.sun_path, path_.c_str(), path_.size() + 1);
  fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd_ < 0) return unexpected(std::string("socket: ") + std::strerror(errno));
  if (::connect(fd_, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    const int err = errno;
    close();
    return unexpected("connect " + path_ + ": " + std::strerror(err));
  }
  // A stuck daemon fails the call instead of hanging the run.
  timeval tv{30, 0};
  if (::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) != 0 ||
      ::setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) != 0) {
    const int err = errno;
    close();
    return unexpected(std::string("setsockopt: ") + std::strerror(err));
  }
  if (buffer_.capacity() < 64 * 1024) buffer_.reserve(64 * 1024);
  return {};
}

namespace {

// The value of a header in the head (which ends with the blank line), case-insensitively.
std::string_view header_value(std::string_view head, std::string_view name) {
  std::size_t pos = head.find("\r\n");
  while (pos != std::string_view::npos && pos + 2 < head.size()) {
    const std::size_t start = pos + 2;
    const std::size_t end = head.find("\r\n", start);
    if (end == std::string_view::npos) break;
    const std::string_view line = head.substr(start, end - start);
    if (line.size() > name.size() && line[name.size()] == ':' && ::strncasecmp(line.data(), name.data(), name.size()) == 0) {
      std::string_view v = line.substr(name.size() + 1);
      while (!v.empty() && v.front() == ' ') v.remove_prefix(1);
      return v;
    }
    pos = end;
  }
  return {};
}

}  // namespace

Expected<int, std::string> HttpConnection::round_trip(std::string_view request) {
  if (fd_ < 0)
    if (auto ok = connect(); !ok) return unexpected(ok.error());
  for (std::size_t sent = 0; sent < request.size();) {
    const ssize_t n = ::send(fd_, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int err = errno;
      close();
      return unexpected(std::string("send: ") + std::strerror(err));
    }
    sent += static_cast<std::size_t>(n);
  }
  buffer_.clear();
  std::size_t head_end = std::string::npos, total = 0;
  char chunk[16384];
  while (true) {
    const ssize_t n = ::recv(fd_, chunk, sizeof chunk, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const std::string why = n == 0 ? "connection closed by the daemon" : std::string("recv: ") + std::strerror(errno);
      close();
      return unexpected(why);
    }
    buffer_.append(chunk, static_cast<std::size_t>(n));
    if (head_end == std::string::npos) {
      head_end = buffer_.find("\r\n\r\n");
      if (head_end == std::string::npos) continue;
      const std::string_view length = header_value(std::string_view(buffer_).substr(0, head_end + 2), "Content-Length");
      if (length.empty()) {
        close();
        return unexpected(std::string("response without Content-Length"));
      }
      body_offset_ = head_end + 4;
      if (std::from_chars(length.data(), length.data() + length.size(), body_size_).ec != std::errc()) {
        close();
        return unexpected(std::string("bad Content-Length"));
      }
      total = body_offset_ + body_size_;
    }
    if (buffer_.size() >= total) break;
  }
  if (buffer_.size() < 12 || buffer_.compare(0, 5, "HTTP/") != 0) {
    close();
    return unexpected(std::string("not an HTTP response"));
  }
  const int status = std::atoi(buffer_.c_str() + 9);
  if (header_value(std::string_view(buffer_).substr(0, head_end + 2), "Connection") == "close") close();
  return status;
}

std::string http_request(std::string_view method, std::string_view target, std::string_view body) {
  std::string r;
  r.append(method).append(" ").append(target).append(" HTTP/1.1\r\nHost: custody\r\n");
  if (method == "POST")
    r.append("Content-Type: application/json\r\nContent-Length: ").append(std::to_string(body.size())).append("\r\n");
  r.append("\r\n").append(body);
  return r;
}

}  // namespace custody::bench
