#pragma once
// HTTP/1.1 over Unix sockets (Boost.Beast, C++20 coroutines). One I/O thread reads and writes;
// requests run on the worker pool, where PKCS#11 calls block. Limits: connections, requests in
// flight, body size, idle and request timeouts. drain() stops accepting, lets requests in flight
// finish, closes idle connections, and then lets the io_context run out of work.
#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/thread_pool.hpp>
#include <chrono>
#include <functional>
#include <list>
#include <memory>

#include "daemon/service/metrics.h"
#include "daemon/service/service.h"
#include "daemon/transport/unix_listener.h"

namespace custody::transport {

struct Limits {
  std::size_t max_body_bytes = 64 * 1024;
  unsigned max_connections = 256;
  unsigned max_in_flight = 1024;
  std::chrono::milliseconds idle_timeout{60'000};
  std::chrono::milliseconds request_timeout{10'000};
};

class Server {
 public:
  Server(boost::asio::io_context& io, boost::asio::thread_pool& workers, Limits limits, service::Metrics& metrics);
  ~Server();

  Expected<void, std::string> listen(const SocketSpec& spec, service::Service& service);
  // Must be called on the I/O thread (e.g. from a signal handler posted to it).
  // on_drained runs once the last connection has closed.
  void drain(std::function<void()> on_drained);
  bool draining() const { return draining_; }

 private:
  struct Connection;
  struct Listener;
  boost::asio::awaitable<void> accept_loop(Listener& listener);
  boost::asio::awaitable<void> serve(std::shared_ptr<Connection> connection, service::Service& service);

  boost::asio::io_context& io_;
  boost::asio::thread_pool& workers_;
  Limits limits_;
  service::Metrics& metrics_;
  std::list<std::unique_ptr<Listener>> listeners_;
  std::list<std::weak_ptr<Connection>> connections_;
  unsigned open_connections_ = 0;
  unsigned in_flight_ = 0;  // touched on the I/O thread only
  bool draining_ = false;
  std::function<void()> on_drained_;
  void maybe_drained();
};

}  // namespace custody::transport
