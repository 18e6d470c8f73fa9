#include "custody/unix_http_client.h"

#include "custody/detail/reply_parsing.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <boost/asio/local/stream_protocol.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <optional>

namespace custody::client {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using local = asio::local::stream_protocol;
using Clock = std::chrono::steady_clock;

namespace {

using detail::ReplyParser;
using detail::WipedBuffer;

Error transport_error(ErrorCode code, std::string message) {
  Error e;
  e.code = code;
  e.message = std::move(message);
  return e;
}

bool is_timeout(const boost::system::error_code& ec) {
  return ec == asio::error::would_block || ec == asio::error::try_again || ec == asio::error::timed_out;
}

bool is_limit(const boost::system::error_code& ec) {
  return ec == http::error::body_limit || ec == http::error::header_limit || ec == http::error::buffer_overflow;
}

// The parser refused the bytes (as opposed to the connection ending or timing out).
bool is_malformed(const boost::system::error_code& ec) {
  static const auto& http_category = boost::system::error_code(http::error::bad_version).category();
  return ec && ec.category() == http_category && ec != http::error::end_of_stream && ec != http::error::partial_message;
}

// SO_SNDTIMEO bounds a blocking connect() on a Unix socket whose backlog is full.
Expected<void, std::string> set_send_timeout(int fd, Clock::duration left) {
  const auto us = std::max<long long>(std::chrono::duration_cast<std::chrono::microseconds>(left).count(), 1000);
  timeval tv{static_cast<time_t>(us / 1000000), static_cast<suseconds_t>(us % 1000000)};
  if (::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) != 0)
    return unexpected(std::string("setsockopt(SO_SNDTIMEO): ") + std::strerror(errno));
  return {};
}

// Waits until fd is ready for events or the deadline passes (false). Asio's blocking calls would
// wait forever on a silent peer (they poll without a timeout after EAGAIN): the socket is
// non-blocking and every wait goes through here.
bool wait_ready(int fd, short events, Clock::time_point deadline) {
  while (true) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) return false;
    pollfd p{fd, events, 0};
    const int n = ::poll(&p, 1, static_cast<int>(std::min<long long>(left + 1, 60000)));
    if (n > 0) return true;
    if (n < 0 && errno != EINTR) return true;  // the next call reports the socket's error
  }
}

bool has_line_break(std::string_view s) { return s.find_first_of(std::string_view("\r\n\0", 3)) != std::string_view::npos; }

}  // namespace

namespace detail {

void apply_limits(ReplyParser& parser, const TransportLimits& limits) {
  parser.header_limit(static_cast<std::uint32_t>(std::min<std::size_t>(limits.max_header_bytes, UINT32_MAX)));
  parser.body_limit(limits.max_body_bytes);
}

void refuse_chunked(const ReplyParser& parser, boost::system::error_code& ec) {
  if ((!ec || ec == http::error::need_more) && parser.is_header_done() && parser.chunked())
    ec = http::error::bad_transfer_encoding;
}

SecureHttpReply reply_from(ReplyParser& parser) {
  auto& res = parser.get();
  SecureHttpReply reply;
  reply.status = static_cast<int>(res.result_int());
  reply.body = std::string_view(res.body().data(), res.body().size());
  reply.request_id = std::string(res["X-Request-Id"]);
  reply.content_type = std::string(res[http::field::content_type]);
  if (auto it = res.find(http::field::retry_after); it != res.end()) reply.retry_after = parse_retry_after(it->value());
  return reply;
}

Expected<SecureHttpReply, Error> parse_reply_bytes(std::string_view bytes, const TransportLimits& limits,
                                                   std::size_t chunk) {
  ReplyParser parser;
  apply_limits(parser, limits);
  boost::system::error_code ec;
  std::size_t start = 0, end = 0;  // [start, end): offered to the parser and not yet taken
  auto offer_more = [&] {
    if (end == bytes.size()) return false;
    end = chunk == 0 ? bytes.size() : std::min(end + chunk, bytes.size());
    return true;
  };
  offer_more();
  while (!parser.is_done()) {
    if (start == end && !offer_more()) {
      // A body delimited by the end of the connection ends here (put_eof needs a started reply).
      if (parser.got_some()) parser.put_eof(ec);
      break;
    }
    start += parser.put(asio::buffer(bytes.data() + start, end - start), ec);
    refuse_chunked(parser, ec);
    if (ec == http::error::need_more) {
      ec = {};
      if (!offer_more()) {
        if (parser.got_some()) parser.put_eof(ec);
        break;
      }
      continue;
    }
    if (ec) break;
  }
  if (!parser.is_done()) {
    Error e;
    e.code = ErrorCode::bad_reply;
    e.message = ec ? "malformed or oversized reply: " + ec.message() : std::string("the reply is incomplete");
    return unexpected(std::move(e));
  }
  return reply_from(parser);
}

}  // namespace detail

std::optional<std::chrono::seconds> parse_retry_after(std::string_view value) {
  unsigned seconds = 0;
  auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), seconds);
  if (ec != std::errc() || end != value.data() + value.size() || value.empty() || seconds > 3600) return std::nullopt;
  return std::chrono::seconds(seconds);
}

struct UnixHttpClient::Impl {
  std::string path;
  std::chrono::milliseconds timeout;
  TransportLimits limits;
  asio::io_context io;
  std::optional<local::socket> stream;
  WipedBuffer buffer;

  Expected<void, Error> connect(Clock::time_point deadline) {
    stream.emplace(io);
    boost::system::error_code ec;
    stream->open(local(), ec);
    if (ec) {
      stream.reset();
      return unexpected(transport_error(ErrorCode::connection_failed, "cannot open a Unix socket: " + ec.message()));
    }
    const int fd = stream->native_handle();
    if (auto set = set_send_timeout(fd, deadline - Clock::now()); !set) {
      stream.reset();
      return unexpected(transport_error(ErrorCode::connection_failed, set.error()));
    }
    // connect(2) itself: asio's would retry an EAGAIN (full backlog) by waiting without a bound.
    const local::endpoint endpoint(path);
    if (::connect(fd, endpoint.data(), static_cast<socklen_t>(endpoint.size())) != 0) {
      const int err = errno;
      stream.reset();
      return unexpected(transport_error(err == EAGAIN ? ErrorCode::timeout : ErrorCode::connection_failed,
                                        "cannot connect to " + path + ": " + std::strerror(err)));
    }
    stream->non_blocking(true, ec);
    if (ec) {
      stream.reset();
      return unexpected(transport_error(ErrorCode::connection_failed, "cannot make the socket non-blocking: " + ec.message()));
    }
    buffer.clear();
    return {};
  }

  // A kept-alive connection is reusable while the daemon has neither closed it nor sent anything.
  bool still_open() {
    pollfd p{stream->native_handle(), POLLIN, 0};
    const int ready = ::poll(&p, 1, 0);
    if (ready == 0) return true;
    if (ready < 0 || (p.revents & (POLLERR | POLLHUP | POLLNVAL))) return false;
    char byte;
    const ssize_t n = ::recv(stream->native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
  }

  void drop() {
    stream.reset();
    buffer.clear();
  }
};

UnixHttpClient::UnixHttpClient(std::string socket_path, std::chrono::milliseconds timeout, TransportLimits limits)
    : impl_(new Impl{std::move(socket_path), timeout, limits, {}, {}, {}}) {}

UnixHttpClient::~UnixHttpClient() = default;

const std::string& UnixHttpClient::socket_path() const { return impl_->path; }

Expected<SecureHttpReply, Error> UnixHttpClient::exchange(std::string_view method, std::string_view target,
                                                          std::string_view body,
                                                          const std::map<std::string, std::string>& headers,
                                                          bool replayable) {
  auto& s = *impl_;
  for (int attempt = 0; attempt < 2; ++attempt) {
    const auto deadline = Clock::now() + s.timeout;
    if (s.stream && !s.still_open()) s.drop();
    const bool reused = s.stream.has_value();
    if (!reused)
      if (auto ok = s.connect(deadline); !ok) return unexpected(ok.error());
    const int fd = s.stream->native_handle();

    // Written by hand into wiped memory (the body may be plaintext base64); refused if a field
    // could split the request.
    if (has_line_break(method) || method.find(' ') != std::string_view::npos || has_line_break(target) ||
        target.find(' ') != std::string_view::npos)
      return unexpected(transport_error(ErrorCode::invalid_argument, "the method or target is not a single token"));
    SecureString wire;
    wire.reserve(256 + body.size());
    wire.append(method).append(" ").append(target).append(" HTTP/1.1\r\nHost: custody\r\n");
    bool agent = false;
    for (const auto& [k, v] : headers) {
      if (has_line_break(k) || has_line_break(v) || k.find(':') != std::string::npos)
        return unexpected(transport_error(ErrorCode::invalid_argument, "a header name or value is malformed"));
      agent = agent || beast::iequals(k, "User-Agent");
      wire.append(k).append(": ").append(v).append("\r\n");
    }
    if (!agent) wire.append("User-Agent: custody-cpp-client\r\n");
    if (!body.empty() || method == "POST")
      wire.append("Content-Type: application/json\r\nContent-Length: ").append(std::to_string(body.size())).append("\r\n");
    wire.append("\r\n").append(body);

    boost::system::error_code ec;
    bool write_timed_out = false;
    int write_errno = 0;
    for (std::size_t off = 0; off < wire.size();) {
      const ssize_t n = ::send(fd, wire.data() + off, wire.size() - off, MSG_NOSIGNAL);
      if (n > 0) {
        off += static_cast<std::size_t>(n);
      } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        if (!wait_ready(fd, POLLOUT, deadline)) {
          write_timed_out = true;
          break;
        }
      } else if (n < 0 && errno == EINTR) {
        continue;
      } else {
        write_errno = n < 0 ? errno : EPIPE;
        break;
      }
    }
    // A request cut off before its end is never run: the daemon needs all of it.
    const bool sent = !write_timed_out && write_errno == 0;
    // A daemon that refuses a request early (e.g. 413) may answer before the body is sent.
    const bool answered_early = write_errno == EPIPE || write_errno == ECONNRESET;
    if (!sent && !answered_early) ec = boost::system::error_code(write_errno ? write_errno : ETIMEDOUT, boost::system::system_category());

    ReplyParser parser;
    detail::apply_limits(parser, s.limits);
    bool timed_out = write_timed_out;
    if (sent || answered_early) {
      ec = {};
      while (!parser.is_done()) {
        http::read_some(*s.stream, s.buffer, parser, ec);
        detail::refuse_chunked(parser, ec);
        if (is_timeout(ec)) {
          ec = {};
          if (!wait_ready(fd, POLLIN, deadline)) {
            timed_out = true;
            break;
          }
          continue;
        }
        if (ec) break;
      }
    }
    if (!parser.is_done()) {
      const bool nothing_back = !parser.got_some();
      s.drop();
      if (is_limit(ec))
        return unexpected(transport_error(ErrorCode::bad_reply, "the reply from " + s.path + " exceeds the client's limits (" +
                                                                    ec.message() + ")"));
      if (is_malformed(ec))
        return unexpected(transport_error(ErrorCode::bad_reply, "malformed reply from " + s.path + ": " + ec.message()));
      if (!sent) {
        if (write_timed_out)
          return unexpected(transport_error(ErrorCode::timeout, "the daemon at " + s.path + " did not take the request in time"));
        // The daemon closed a kept-alive connection as we wrote: nothing ran; try a new one.
        if (reused && attempt == 0) continue;
        return unexpected(transport_error(ErrorCode::connection_failed, "cannot send to " + s.path + ": " + ec.message()));
      }
      // Written in full: the daemon may have run it. Sent again only when that does no harm.
      if (reused && attempt == 0 && replayable && nothing_back && !timed_out) continue;
      if (timed_out)
        return unexpected(transport_error(ErrorCode::timeout, "no answer from " + s.path + " within " +
                                                                  std::to_string(s.timeout.count()) + " ms"));
      return unexpected(transport_error(ErrorCode::connection_lost,
                                        "the connection to " + s.path + " broke before the answer: " +
                                            (ec ? ec.message() : std::string("closed"))));
    }
    const bool keep_alive = parser.get().keep_alive();
    SecureHttpReply reply = detail::reply_from(parser);
    if (!keep_alive || !sent) s.drop();
    return reply;
  }
  return unexpected(transport_error(ErrorCode::connection_failed, "cannot send to " + s.path));
}

Expected<HttpReply, std::string> UnixHttpClient::call(const std::string& method, const std::string& target,
                                                      const std::string& body,
                                                      const std::map<std::string, std::string>& headers) {
  std::map<std::string, std::string> with_agent = headers;
  with_agent.emplace("User-Agent", "custodyctl");
  auto r = exchange(method, target, body, with_agent, true);
  if (!r) {
    const auto& e = r.error();
    if (e.code == ErrorCode::connection_failed) return unexpected(e.message);
    return unexpected("request to " + impl_->path + " failed: " + e.message);
  }
  return HttpReply{r->status, std::string(r->body.view()), std::move(r->request_id), std::move(r->content_type),
                   r->retry_after};
}

}  // namespace custody::client
