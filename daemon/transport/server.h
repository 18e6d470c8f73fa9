#pragma once
// HTTP/1.1 over Unix sockets (Asio, C++20 coroutines), hardened against the local peers it
// serves. One I/O thread reads and writes; requests run on the worker pool, where PKCS#11 calls
// block, taken in turns across uids (FairQueue). Bounds: connections per listener and per uid
// (429 at the limit), requests in flight and an optional per-uid rate (429), header and body
// size (HttpRequestParser), a first-byte deadline for new connections, a deadline for each whole
// request (reading, queueing: a request that waited too long gets 503 without running, writing),
// idle keep-alive time. No exception from one connection ends the process. drain() stops
// accepting, lets requests in flight finish, closes idle connections, and then lets the
// io_context run out of work.
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
#include "daemon/transport/connection_budget.h"
#include "daemon/transport/fair_queue.h"
#include "daemon/transport/http_request_parser.h"
#include "daemon/transport/uid_rate_limiter.h"
#include "daemon/transport/unix_listener.h"

namespace custody::transport {

struct Limits {
  std::size_t max_body_bytes = 64 * 1024;
  std::size_t max_header_bytes = 16 * 1024;
  unsigned max_connections = 256;         // service socket
  unsigned max_connections_per_uid = 32;  // service socket, one uid
  unsigned admin_connections = 16;        // admin socket
  unsigned max_in_flight = 128;  // service socket; the admin socket's is admin_connections
  double uid_requests_per_second = 0;  // 0: off
  unsigned uid_burst = 0;
  unsigned workers = 1;  // requests running at once on the worker pool
  std::chrono::milliseconds first_byte_timeout{5'000};
  std::chrono::milliseconds idle_timeout{60'000};
  std::chrono::milliseconds request_timeout{10'000};
};

// Which budget a listener's connections draw from.
enum class ListenerKind { service, admin };

class Server {
 public:
  Server(boost::asio::io_context& io, boost::asio::thread_pool& workers, Limits limits, service::Metrics& metrics);
  ~Server();

  Expected<void, std::string> listen(const SocketSpec& spec, ListenerKind kind, service::Service& service);
  // Must be called on the I/O thread (e.g. from a signal handler posted to it).
  // on_drained runs once the last connection has closed.
  void drain(std::function<void()> on_drained);
  bool draining() const { return draining_; }

 private:
  struct Connection;
  struct Listener;
  struct Pending;
  boost::asio::awaitable<void> accept_loop(Listener& listener);
  boost::asio::awaitable<void> serve(std::shared_ptr<Connection> connection, Listener& listener);
  void refuse_connection(boost::asio::local::stream_protocol::socket& socket, service::Refusal reason,
                         const std::string& why);
  // Queues a request for a worker; its connection's coroutine waits for pending.done.
  void submit(Pending& pending);
  void dispatch();
  void run_on_worker(Pending& pending);
  void finish(Pending& pending, service::Response response);

  boost::asio::io_context& io_;
  boost::asio::thread_pool& workers_;
  Limits limits_;
  HttpLimits http_limits_;
  service::Metrics& metrics_;
  std::list<std::unique_ptr<Listener>> listeners_;
  std::list<std::weak_ptr<Connection>> connections_;
  // Everything below is touched on the I/O thread only.
  FairQueue<Pending> queue_;
  UidRateLimiter rate_;
  unsigned running_ = 0;  // requests out on the worker pool
  unsigned open_connections_ = 0;
  bool draining_ = false;
  std::function<void()> on_drained_;
  void maybe_drained();
};

}  // namespace custody::transport
