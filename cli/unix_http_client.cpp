#include "cli/unix_http_client.h"

#include <sys/socket.h>
#include <sys/time.h>

#include <boost/asio/local/stream_protocol.hpp>
#include <optional>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

namespace custody::client {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using local = asio::local::stream_protocol;

struct UnixHttpClient::Impl {
  std::string path;
  std::chrono::milliseconds timeout;
  asio::io_context io;
  std::optional<local::socket> stream;
  beast::flat_buffer buffer;

  Expected<void, std::string> connect() {
    stream.emplace(io);
    boost::system::error_code ec;
    stream->connect(local::endpoint(path), ec);
    if (ec) {
      stream.reset();
      return unexpected("cannot connect to " + path + ": " + ec.message());
    }
    buffer.clear();
    // Blocking reads and writes give up after the timeout instead of hanging on a stuck daemon.
    timeval tv{static_cast<time_t>(timeout.count() / 1000), static_cast<suseconds_t>(timeout.count() % 1000 * 1000)};
    ::setsockopt(stream->native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(stream->native_handle(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    return {};
  }
};

UnixHttpClient::UnixHttpClient(std::string socket_path, std::chrono::milliseconds timeout)
    : impl_(new Impl{std::move(socket_path), timeout, {}, {}, {}}) {}

UnixHttpClient::~UnixHttpClient() { delete impl_; }

Expected<HttpReply, std::string> UnixHttpClient::call(const std::string& method, const std::string& target,
                                                      const std::string& body,
                                                      const std::map<std::string, std::string>& headers) {
  for (int attempt = 0; attempt < 2; ++attempt) {
    const bool fresh = !impl_->stream;
    if (fresh)
      if (auto ok = impl_->connect(); !ok) return unexpected(ok.error());
    http::request<http::string_body> req{http::string_to_verb(method), target, 11};
    req.set(http::field::host, "custody");
    req.set(http::field::user_agent, "custodyctl");
    for (const auto& [k, v] : headers) req.set(k, v);
    if (!body.empty() || method == "POST") {
      req.set(http::field::content_type, "application/json");
      req.body() = body;
    }
    req.keep_alive(true);
    req.prepare_payload();
    boost::system::error_code ec;
    http::write(*impl_->stream, req, ec);
    http::response_parser<http::string_body> parser;
    parser.body_limit(64 * 1024 * 1024);
    // A daemon that refuses a request early (e.g. 413) may answer before the body is sent:
    // read its answer even when the write broke off.
    const bool answered_early = ec == asio::error::broken_pipe || ec == asio::error::connection_reset;
    if (!ec || answered_early) http::read(*impl_->stream, impl_->buffer, parser, ec);
    if (ec) {
      impl_->stream.reset();
      // A kept-alive connection the daemon has closed meanwhile: try once on a new one.
      if (!fresh) continue;
      return unexpected("request to " + impl_->path + " failed: " + ec.message());
    }
    auto& res = parser.get();
    HttpReply reply{static_cast<int>(res.result_int()), std::move(res.body()), std::string(res["X-Request-Id"]),
                    std::string(res[http::field::content_type])};
    if (!res.keep_alive()) impl_->stream.reset();
    return reply;
  }
  return unexpected(std::string("request failed"));
}

}  // namespace custody::client
