#include "daemon/transport/server.h"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <openssl/crypto.h>

#include <array>
#include <optional>
#include <spdlog/spdlog.h>

namespace custody::transport {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using local = asio::local::stream_protocol;
using Stream = beast::basic_stream<local, asio::any_io_executor, beast::unlimited_rate_policy>;

struct Server::Listener {
  local::acceptor acceptor;
  service::Service& service;
  std::string path;
};

struct Server::Connection {
  explicit Connection(local::socket s) : stream(std::move(s)) {}
  Stream stream;
  bool busy = false;  // between reading a request and sending its response
};

namespace {

constexpr std::size_t kLingerBytes = 1024 * 1024;

// Runs service.handle on the worker pool and resumes the coroutine with the response on its own
// executor. The work guard keeps the io_context alive while a request is out on a worker.
template <class Token>
auto async_handle(asio::thread_pool& workers, service::Service& service, service::Request request, Token&& token) {
  return asio::async_initiate<Token, void(service::Response)>(
      [&workers, &service](auto handler, service::Request request) {
        auto ex = asio::get_associated_executor(handler);
        auto state = std::make_shared<std::pair<decltype(handler), asio::executor_work_guard<decltype(ex)>>>(
            std::move(handler), asio::make_work_guard(ex));
        asio::post(workers, [&service, request = std::move(request), state, ex]() mutable {
          service.handle(request, [state, ex](service::Response response) {
            asio::post(ex, [state, response = std::move(response)]() mutable {
              auto h = std::move(state->first);
              h(std::move(response));
            });
          });
        });
      },
      token, std::move(request));
}

template <class Token>
auto async_refuse(service::Service& service, service::Request request, core::Error error, Token&& token) {
  return asio::async_initiate<Token, void(service::Response)>(
      [&service](auto handler, service::Request request, core::Error error) {
        auto ex = asio::get_associated_executor(handler);
        auto state = std::make_shared<std::pair<decltype(handler), asio::executor_work_guard<decltype(ex)>>>(
            std::move(handler), asio::make_work_guard(ex));
        service.refuse(request, error, [state, ex](service::Response response) {
          asio::post(ex, [state, response = std::move(response)]() mutable {
            auto h = std::move(state->first);
            h(std::move(response));
          });
        });
      },
      token, std::move(request), std::move(error));
}

http::response<http::string_body> to_http(service::Response r, const std::string& request_id, unsigned version,
                                          bool keep_alive) {
  http::response<http::string_body> res{static_cast<http::status>(r.status), version};
  res.set(http::field::content_type, r.content_type);
  res.set("X-Request-Id", request_id);
  res.body() = std::move(r.body);
  res.keep_alive(keep_alive);
  res.prepare_payload();
  return res;
}

}  // namespace

Server::Server(asio::io_context& io, asio::thread_pool& workers, Limits limits, service::Metrics& metrics)
    : io_(io), workers_(workers), limits_(limits), metrics_(metrics) {}

Server::~Server() = default;

Expected<void, std::string> Server::listen(const SocketSpec& spec, service::Service& service) {
  auto listener = std::make_unique<Listener>(Listener{local::acceptor(io_), service, spec.path});
  if (auto ok = open_listener(listener->acceptor, spec); !ok) return ok;
  auto& ref = *listener;
  listeners_.push_back(std::move(listener));
  asio::co_spawn(io_, accept_loop(ref), asio::detached);
  return {};
}

asio::awaitable<void> Server::accept_loop(Listener& listener) {
  for (;;) {
    boost::system::error_code ec;
    local::socket socket = co_await listener.acceptor.async_accept(asio::redirect_error(asio::use_awaitable, ec));
    if (ec) {
      if (ec == asio::error::operation_aborted || draining_) co_return;
      spdlog::warn("accept on {} failed: {}", listener.path, ec.message());
      continue;
    }
    if (open_connections_ >= limits_.max_connections) {
      metrics_.count_rejected_connection();
      continue;  // the socket closes as it goes out of scope
    }
    auto connection = std::make_shared<Connection>(std::move(socket));
    connections_.remove_if([](const auto& weak) { return weak.expired(); });
    connections_.push_back(connection);
    ++open_connections_;
    asio::co_spawn(io_, serve(connection, listener.service), [this](std::exception_ptr e) {
      --open_connections_;
      maybe_drained();
      if (e) {
        try {
          std::rethrow_exception(e);
        } catch (const std::exception& ex) {
          spdlog::error("connection ended by an exception: {}", ex.what());
        }
      }
    });
  }
}

asio::awaitable<void> Server::serve(std::shared_ptr<Connection> connection, service::Service& service) {
  auto& stream = connection->stream;
  auto peer = peer_credentials(stream.socket().native_handle());
  if (!peer) co_return;
  beast::flat_buffer buffer;
  bool unread_body = false;
  for (;;) {
    if (draining_) break;
    http::request_parser<http::string_body> parser;
    parser.body_limit(limits_.max_body_bytes);
    parser.header_limit(16 * 1024);
    boost::system::error_code ec;
    stream.expires_after(limits_.idle_timeout);
    co_await http::async_read_header(stream, buffer, parser, asio::redirect_error(asio::use_awaitable, ec));
    // A Content-Length over the limit fails already here; anything else before a complete
    // header (closed, idle timeout, drain, garbage) leaves nothing to answer.
    if (ec && ec != http::error::body_limit) break;
    connection->busy = true;
    if (!ec) {
      stream.expires_after(limits_.request_timeout);
      co_await http::async_read(stream, buffer, parser, asio::redirect_error(asio::use_awaitable, ec));
    }
    auto& req = parser.get();
    service::Request request;
    request.method = std::string(req.method_string());
    auto target = std::string_view(req.target());
    request.target = std::string(target.substr(0, target.find('?')));
    request.peer = *peer;
    request.request_id = service::choose_request_id(req["X-Request-Id"]);
    const std::string request_id = request.request_id;

    bool keep_alive = req.keep_alive() && !ec;
    service::Response response;
    metrics_.in_flight(1);
    // Named locals, not temporaries, in co_await expressions: GCC 12 destroys some temporaries
    // of a co_await twice.
    std::optional<core::Error> refusal;
    if (ec == http::error::body_limit) {
      refusal = core::Error{core::Code::payload_too_large,
                            "the body is larger than " + std::to_string(limits_.max_body_bytes) + " bytes"};
    } else if (ec) {
      if (ec == beast::error::timeout || ec == asio::error::operation_aborted || ec == http::error::end_of_stream ||
          ec == asio::error::eof || ec == http::error::partial_message) {
        metrics_.in_flight(-1);
        break;
      }
      refusal = core::Error{core::Code::invalid_argument, "malformed HTTP request: " + ec.message()};
    } else if (in_flight_ >= limits_.max_in_flight) {
      refusal = core::Error{core::Code::resource_exhausted, "too many requests in flight"};
    }
    if (refusal) {
      response = co_await async_refuse(service, request, *refusal, asio::use_awaitable);
    } else {
      request.body = std::move(req.body());
      ++in_flight_;
      response = co_await async_handle(workers_, service, std::move(request), asio::use_awaitable);
      --in_flight_;
    }
    metrics_.in_flight(-1);
    metrics_.count_response(response.status);
    if (draining_) keep_alive = false;
    auto res = to_http(std::move(response), request_id, req.version(), keep_alive);
    stream.expires_after(limits_.request_timeout);
    co_await http::async_write(stream, res, asio::redirect_error(asio::use_awaitable, ec));
    // Bodies can carry plaintext or keys: wipe them before the memory goes back.
    OPENSSL_cleanse(res.body().data(), res.body().size());
    OPENSSL_cleanse(req.body().data(), req.body().size());
    connection->busy = false;
    unread_body = !parser.is_done();
    if (ec || !keep_alive) break;
  }
  boost::system::error_code ignored;
  if (unread_body) {
    // Lingering close: the client may still be sending the body we refused. Closing with unread
    // data would reset the connection and the client would never see our answer, so stop
    // sending, then read and drop what comes for a short while.
    stream.socket().shutdown(local::socket::shutdown_send, ignored);
    std::array<char, 16 * 1024> sink;
    std::size_t drained = 0;
    stream.expires_after(std::chrono::seconds(1));
    while (drained < kLingerBytes) {
      std::size_t n = co_await stream.async_read_some(asio::buffer(sink), asio::redirect_error(asio::use_awaitable, ignored));
      if (ignored) break;
      drained += n;
    }
  }
  stream.socket().shutdown(local::socket::shutdown_both, ignored);
  stream.close();
}

void Server::maybe_drained() {
  if (draining_ && open_connections_ == 0 && on_drained_) std::exchange(on_drained_, nullptr)();
}

void Server::drain(std::function<void()> on_drained) {
  if (draining_) return;
  draining_ = true;
  on_drained_ = std::move(on_drained);
  for (auto& l : listeners_) {
    boost::system::error_code ec;
    l->acceptor.close(ec);
    ::unlink(l->path.c_str());
  }
  // Idle connections wait in a read that would never end: close them now. Busy ones finish
  // their request and close after the response.
  for (auto& weak : connections_)
    if (auto c = weak.lock(); c && !c->busy) c->stream.socket().cancel();
  connections_.clear();
  maybe_drained();
}

}  // namespace custody::transport
