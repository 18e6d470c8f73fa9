#pragma once
// HTTP/1.1 over Unix sockets and one TCP listener (plain or TLS, for the XKS front end) (Asio,
// C++20 coroutines), hardened against the peers it serves: the same loop, framing, limits and
// timeouts for both; a peer is a uid on a Unix socket and an address on TCP (PeerKey). One I/O thread reads and writes. Requests are taken in turns across uids (FairQueue) and
// run either on the I/O thread itself (workers = 0: a local token answers in microseconds, and
// every hand-over between threads would cost more than the call) or on the worker pool, where
// PKCS#11 calls may block for a network round trip. Long work always goes to the pool, so that it
// never stalls the loop: the admin socket's requests (key generation may take a second) and
// batches (hundreds of token calls). Bounds: connections per listener and per uid
// (429 at the limit), requests in flight and an optional per-uid rate (429), header and body
// size (HttpRequestParser), a first-byte deadline for new connections, a deadline for each whole
// request (reading, queueing: a request that waited too long gets 503 without running, writing),
// idle keep-alive time. No exception from one connection ends the process. drain() stops
// accepting, lets requests in flight finish, closes idle connections, and then lets the
// io_context run out of work.
#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>
#include <chrono>
#include <functional>
#include <list>
#include <memory>

#include "daemon/service/metrics.h"
#include "daemon/service/service.h"
#include "daemon/transport/buffer_pool.h"
#include "daemon/transport/connection_budget.h"
#include "daemon/transport/endpoint.h"
#include "daemon/transport/fair_queue.h"
#include "daemon/transport/http_request_parser.h"
#include "daemon/transport/tcp_listener.h"
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
  // Service socket requests running at once on the worker pool; 0: single requests on the I/O
  // thread, one at a time, and batches and admin requests on a pool of one.
  unsigned workers = 1;
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
  // A TCP listener (plain HTTP, or TLS when spec.tls) handing its requests to endpoint, with the
  // service socket's limits: connections in total and per peer address, requests in flight, the
  // per-peer rate, header and body sizes, every timeout. Answers the port it listens on.
  Expected<std::uint16_t, std::string> listen_tcp(const TcpSpec& spec, Endpoint& endpoint);
  // New TLS connections on the listener at port use context from now on (certificate reload);
  // connections already open keep theirs.
  void replace_tls_context(std::uint16_t port, std::shared_ptr<boost::asio::ssl::context> context);
  // Must be called on the I/O thread (e.g. from a signal handler posted to it).
  // on_drained runs once the last connection has closed.
  void drain(std::function<void()> on_drained);
  bool draining() const { return draining_; }

 private:
  struct Connection;
  struct Listener;
  struct Pending;
  boost::asio::awaitable<void> accept_loop(Listener& listener);
  template <class Socket>
  struct SocketConnection;
  void start_connection(std::shared_ptr<Connection> connection, boost::asio::awaitable<void> work);
  boost::asio::awaitable<void> serve_unix(std::shared_ptr<SocketConnection<boost::asio::local::stream_protocol::socket>> connection,
                                          Listener& listener);
  boost::asio::awaitable<void> serve_tcp(std::shared_ptr<SocketConnection<boost::asio::ip::tcp::socket>> connection,
                                         Listener& listener);
  // The request loop of one connection, whatever carries its bytes (Unix socket, TCP, TLS).
  template <class Stream>
  boost::asio::awaitable<void> serve_requests(Connection& connection, Stream& stream, Listener& listener,
                                              core::Peer peer, PeerKey key, Origin origin);
  // Cancels the read or write of every connection past its deadline, every 100 ms.
  boost::asio::awaitable<void> sweep_loop();
  // Answers 429 on a fresh plain connection without waiting for the peer; the caller closes it.
  void refuse_connection(int fd, Endpoint& endpoint, service::Refusal reason, const std::string& why);
  // Queues a request; its connection's coroutine waits until it is answered.
  void submit(Pending& pending);
  void dispatch();
  // Runs the next request in turn on the I/O thread, then yields to the reads and writes.
  void run_inline_turn();
  void schedule_inline_turn();
  // Answers without running a request that waited its whole request time in the queue.
  bool refuse_if_stale(Pending& pending);
  void run_on_worker(Pending& pending);
  void run_handler(Pending& pending);
  void answer(Pending& pending, service::Response response);
  void finish(Pending& pending, service::Response response);

  boost::asio::io_context& io_;
  boost::asio::thread_pool& workers_;
  Limits limits_;
  HttpLimits http_limits_;
  service::Metrics& metrics_;
  std::list<std::unique_ptr<Listener>> listeners_;
  std::list<std::weak_ptr<Connection>> connections_;
  // Everything below is touched on the I/O thread only.
  FairQueue<Pending> queue_;         // for the worker pool
  FairQueue<Pending> inline_queue_;  // for the I/O thread
  bool inline_turn_scheduled_ = false;
  UidRateLimiter rate_;
  unsigned running_ = 0;  // requests out on the worker pool
  unsigned in_flight_ = 0;  // requests read and not yet answered, on every socket
  unsigned pool_size_;    // requests the pool runs at once
  BufferPool read_buffers_;
  boost::asio::steady_timer sweep_;
  unsigned open_connections_ = 0;
  bool draining_ = false;
  std::function<void()> on_drained_;
  void maybe_drained();
};

}  // namespace custody::transport
