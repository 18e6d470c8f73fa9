#include "daemon/transport/server.h"

#include <sys/socket.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <openssl/crypto.h>

#include <array>
#include <atomic>
#include <cstring>
#include <spdlog/spdlog.h>

#include "daemon/service/call.h"
#include "daemon/service/json_body.h"
#include "daemon/transport/http_response.h"
#include "daemon/transport/request_reader.h"

// GCC 12 misreads Asio's coroutine frame allocator as a new/delete mismatch (a known false
// positive for awaitable frames); the frames are allocated and freed by the same class.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif

namespace custody::transport {

namespace asio = boost::asio;
using local = asio::local::stream_protocol;
using tcp = asio::ip::tcp;
using TlsStream = asio::ssl::stream<tcp::socket&>;
using SteadyClock = std::chrono::steady_clock;

struct Server::Listener {
  Listener(ConnectionBudget b, unsigned max, bool rate, bool inline_, bool remove, HttpLimits limits)
      : budget(b), max_in_flight(max), rate_limited(rate), inline_calls(inline_), remove_on_close(remove),
        http_limits(limits) {}
  std::optional<local::acceptor> unix_acceptor;
  std::optional<tcp::acceptor> tcp_acceptor;
  std::uint16_t port = 0;
  std::shared_ptr<asio::ssl::context> tls;  // TCP with TLS; replaced on certificate reload
  std::string accepted_client_subject;
  std::unique_ptr<Endpoint> owned_endpoint;
  Endpoint* endpoint = nullptr;
  std::string path;  // a Unix socket's path, or "address:port"
  ConnectionBudget budget;
  // Requests read and not yet answered. Each socket counts its own, so a flood on the service
  // socket never turns operators away from the admin socket.
  unsigned in_flight = 0;
  unsigned max_in_flight;
  bool rate_limited;
  bool inline_calls;  // requests run on the I/O thread
  bool remove_on_close;  // false for a socket systemd passed: its .socket unit owns the file
  HttpLimits http_limits;  // the TCP listener keeps header fields for SigV4
};

struct Server::Connection {
  virtual ~Connection() = default;
  virtual void cancel() = 0;
  // When the current read or write must have finished; the sweep cancels it after that. One
  // time point per connection instead of a timer per operation: no timer syscalls per request.
  SteadyClock::time_point deadline = SteadyClock::time_point::max();
  bool timed_out = false;  // set by the sweep when it cancelled the connection's operation
  bool busy = false;  // from a request's first byte until its response is sent
};

template <class Socket>
struct Server::SocketConnection final : Server::Connection {
  explicit SocketConnection(Socket s) : socket(std::move(s)) {}
  void cancel() override {
    boost::system::error_code ignored;
    socket.cancel(ignored);
  }
  Socket socket;
};

// A request on its way through the service. It lives in its connection's coroutine frame, which
// waits until both the answer is in and the worker (if one ran it) has let go of it.
struct Server::Pending {
  explicit Pending(asio::any_io_executor ex) : wake(ex) {}
  Endpoint* endpoint = nullptr;
  Origin origin;
  PeerKey key = 0;  // whose turn it is in the queues
  bool inline_call = false;
  service::Request request;
  service::Response response;
  SteadyClock::time_point queued_at;
  asio::steady_timer wake;
  std::atomic<bool> answered{false};  // set by whichever thread answers first
  bool response_ready = false, worker_done = false;
  void wake_if_complete() {
    if (response_ready && worker_done) wake.cancel();
  }
};

namespace {

constexpr std::size_t kLingerBytes = 1024 * 1024;
constexpr auto kAcceptBackoff = std::chrono::milliseconds(100);
// Read buffers kept for reuse: about as many as requests are read at once under load.
constexpr std::size_t kKeptReadBuffers = 64;
// How often deadlines are checked: a timeout fires up to this much late.
constexpr auto kSweepInterval = std::chrono::milliseconds(100);

void wipe(std::string& s) { OPENSSL_cleanse(s.data(), s.size()); }

// What a request costs against its uid's rate: one, or its number of items for a batch (one
// request of 256 items is 256 requests' work). Only parsed when a rate is set, in wiped memory:
// bodies carry plaintext.
// Whether a body may be a batch (CONTRACT §3): a "batch" key. Base64 fields cannot hold quotes,
// so only a key or a context value matches; a single request taken for a batch merely runs on
// the pool.
bool may_be_batch(std::string_view body) { return body.find("\"batch\"") != std::string_view::npos; }

double rate_cost(std::string_view body) {
  if (!may_be_batch(body)) return 1;
  boost::system::error_code ec;
  boost::json::parse_options options;
  options.max_depth = 8;
  auto v = boost::json::parse(body, ec, service::zeroizing_storage(), options);
  if (ec || !v.is_object()) return 1;  // the service refuses it with the reason
  const auto* batch = v.as_object().if_contains("batch");
  return batch && batch->is_array() && !batch->as_array().empty() ? static_cast<double>(batch->as_array().size()) : 1;
}

core::Error refusal_error(const HttpRefusal& r) {
  return {r.status == 413 ? core::Code::payload_too_large : core::Code::invalid_argument, r.message};
}

// How refusals name a peer: its uid on a Unix socket, its address on the TCP listener.
std::string describe_peer(PeerKey key, const Origin& origin) {
  if (key >= kIpv4PeerKey) return "peer " + origin.address;
  return "uid " + std::to_string(key);
}

// The socket under a stream, for shutdown and close.
local::socket& lowest(local::socket& s) { return s; }
tcp::socket& lowest(tcp::socket& s) { return s; }
tcp::socket& lowest(TlsStream& s) { return s.next_layer(); }

// A plain socket can wait for readability without a buffer; a TLS stream may already hold
// decrypted bytes that the socket no longer shows, so it reads at once.
template <class Stream>
constexpr bool kWaitsIdle = !std::is_same_v<Stream, TlsStream>;

}  // namespace

Server::Server(asio::io_context& io, asio::thread_pool& workers, Limits limits, service::Metrics& metrics)
    : io_(io),
      workers_(workers),
      limits_(limits),
      http_limits_{limits.max_header_bytes, limits.max_body_bytes},
      metrics_(metrics),
      rate_(limits.uid_requests_per_second, limits.uid_burst),
      pool_size_(limits.workers ? limits.workers : 1),
      read_buffers_(RequestReader::buffer_bytes(http_limits_), kKeptReadBuffers),
      sweep_(io) {
  asio::co_spawn(io_, sweep_loop(), asio::detached);
}

Server::~Server() = default;

Expected<void, std::string> Server::listen(const SocketSpec& spec, ListenerKind kind, service::Service& service) {
  ConnectionBudget budget = kind == ListenerKind::admin
                                ? ConnectionBudget(limits_.admin_connections, limits_.admin_connections)
                                : ConnectionBudget(limits_.max_connections, limits_.max_connections_per_uid);
  const unsigned max_in_flight = kind == ListenerKind::admin ? limits_.admin_connections : limits_.max_in_flight;
  const bool service_socket = kind == ListenerKind::service;
  auto listener = std::make_unique<Listener>(budget, max_in_flight, service_socket,
                                             service_socket && limits_.workers == 0, spec.inherited_fd < 0, http_limits_);
  listener->unix_acceptor.emplace(io_);
  listener->owned_endpoint = std::make_unique<ServiceEndpoint>(service);
  listener->endpoint = listener->owned_endpoint.get();
  listener->path = spec.path;
  if (auto ok = open_listener(*listener->unix_acceptor, spec); !ok) return ok;
  auto& ref = *listener;
  listeners_.push_back(std::move(listener));
  asio::co_spawn(io_, accept_loop(ref), asio::detached);
  return {};
}

Expected<std::uint16_t, std::string> Server::listen_tcp(const TcpSpec& spec, Endpoint& endpoint) {
  HttpLimits limits = http_limits_;
  limits.keep_fields = true;
  auto listener = std::make_unique<Listener>(ConnectionBudget(limits_.max_connections, limits_.max_connections_per_uid),
                                             limits_.max_in_flight, true, limits_.workers == 0, false, limits);
  if (spec.tls) {
    auto context = make_tls_context(*spec.tls);
    if (!context) return unexpected(context.error());
    listener->tls = std::move(*context);
    listener->accepted_client_subject = spec.tls->accepted_client_subject;
  }
  listener->tcp_acceptor.emplace(io_);
  listener->endpoint = &endpoint;
  if (auto ok = open_tcp_listener(*listener->tcp_acceptor, spec); !ok) return unexpected(ok.error());
  boost::system::error_code ec;
  const auto bound = listener->tcp_acceptor->local_endpoint(ec);
  if (ec) return unexpected("cannot read the bound address of " + spec.address + ": " + ec.message());
  listener->port = bound.port();
  listener->path = spec.address + ":" + std::to_string(listener->port);
  auto& ref = *listener;
  listeners_.push_back(std::move(listener));
  asio::co_spawn(io_, accept_loop(ref), asio::detached);
  return ref.port;
}

void Server::replace_tls_context(std::uint16_t port, std::shared_ptr<asio::ssl::context> context) {
  for (auto& l : listeners_)
    if (l->tcp_acceptor && l->port == port && l->tls) l->tls = context;
}

void Server::start_connection(std::shared_ptr<Connection> connection, asio::awaitable<void> work) {
  connections_.push_back(connection);
  ++open_connections_;
  asio::co_spawn(io_, std::move(work), [this](std::exception_ptr e) {
    --open_connections_;
    maybe_drained();
    if (!e) return;
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& ex) {
      spdlog::error("connection ended by an exception: {}", ex.what());
    } catch (...) {
      spdlog::error("connection ended by an unknown exception");
    }
  });
}

asio::awaitable<void> Server::accept_loop(Listener& listener) {
  asio::steady_timer backoff(io_);
  for (;;) {
    bool pause = false;
    try {
      boost::system::error_code ec;
      if (listener.unix_acceptor) {
        local::socket socket = co_await listener.unix_acceptor->async_accept(asio::redirect_error(asio::use_awaitable, ec));
        if (!ec) {
          auto connection = std::make_shared<SocketConnection<local::socket>>(std::move(socket));
          start_connection(connection, serve_unix(connection, listener));
        }
      } else {
        tcp::socket socket = co_await listener.tcp_acceptor->async_accept(asio::redirect_error(asio::use_awaitable, ec));
        if (!ec) {
          auto connection = std::make_shared<SocketConnection<tcp::socket>>(std::move(socket));
          start_connection(connection, serve_tcp(connection, listener));
        }
      }
      if (ec) {
        if (ec == asio::error::operation_aborted || draining_) co_return;
        // Out of descriptors or memory: retrying at once would spin; wait for connections to close.
        spdlog::warn("accept on {} failed: {}", listener.path, ec.message());
        pause = true;
      }
    } catch (const std::exception& e) {
      // The listener must outlive any one failure (e.g. bad_alloc): log, pause, go on accepting.
      spdlog::error("accept loop on {}: {}", listener.path, e.what());
      pause = true;
    }
    if (pause) {
      if (draining_) co_return;
      backoff.expires_after(kAcceptBackoff);
      boost::system::error_code ignored;
      co_await backoff.async_wait(asio::redirect_error(asio::use_awaitable, ignored));
    }
  }
}

void Server::refuse_connection(int fd, Endpoint& endpoint, service::Refusal reason, const std::string& why) {
  metrics_.count_refusal(reason);
  const std::string request_id = service::choose_request_id("");
  std::string out;
  render_response(endpoint.connection_refused({core::Code::resource_exhausted, why}, request_id), request_id, false, out);
  // A fresh socket's send buffer takes a short answer at once; never wait for this peer.
  (void)!::send(fd, out.data(), out.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
  // Best effort, like the send: a peer that is already gone is no error of ours.
  (void)::shutdown(fd, SHUT_WR);
  // Closing with unread input would turn the answer into a reset: read what is already there.
  std::array<char, 4096> sink;
  for (int i = 0; i < 16 && ::recv(fd, sink.data(), sink.size(), MSG_DONTWAIT) > 0; ++i) {
  }
}

void Server::submit(Pending& pending) {
  pending.queued_at = SteadyClock::now();
  if (pending.inline_call) {
    inline_queue_.push(pending.key, &pending);
    schedule_inline_turn();
  } else {
    queue_.push(pending.key, &pending);
    dispatch();
  }
}

void Server::schedule_inline_turn() {
  if (std::exchange(inline_turn_scheduled_, true)) return;
  // Posted, not run here: every request read in this round of the loop gets queued first, so
  // turns are taken across uids rather than in the order the bytes arrived.
  asio::post(io_, [this] {
    inline_turn_scheduled_ = false;
    run_inline_turn();
  });
}

void Server::run_inline_turn() {
  Pending* next = inline_queue_.pop();
  if (!next) return;
  if (!inline_queue_.empty()) schedule_inline_turn();
  if (refuse_if_stale(*next)) return;
  next->worker_done = true;
  // A lone request (1 connection, or a quiet moment) has its audit records written right here
  // instead of crossing to the writer thread and back: the loop has nothing else to do meanwhile.
  next->request.audit_on_this_thread = in_flight_ == 1;
  run_handler(*next);
}

bool Server::refuse_if_stale(Pending& pending) {
  if (SteadyClock::now() - pending.queued_at <= limits_.request_timeout) return false;
  // It waited its whole request time: the client has likely given up. Answer without running.
  metrics_.count_refusal(service::Refusal::queue_timeout);
  pending.worker_done = true;
  pending.endpoint->refuse(pending.request, pending.origin,
                           {core::Code::unavailable, "the request waited too long for its turn; try again"},
                           [this, &pending](service::Response r) { answer(pending, std::move(r)); });
  return true;
}

void Server::dispatch() {
  while (running_ < pool_size_) {
    Pending* next = queue_.pop();
    if (!next) return;
    if (!refuse_if_stale(*next)) run_on_worker(*next);
  }
}

void Server::run_on_worker(Pending& pending) {
  ++running_;
  asio::post(workers_, [this, &pending] {
    run_handler(pending);
    asio::post(io_, [this, &pending] {
      --running_;
      pending.worker_done = true;
      pending.wake_if_complete();
      dispatch();
    });
  });
}

void Server::run_handler(Pending& pending) {
  auto done = [this, &pending](service::Response r) { answer(pending, std::move(r)); };
  try {
    pending.endpoint->handle(pending.request, pending.origin, done);
  } catch (const std::exception& e) {
    // Service::handle already turns a handler's exception into a 500; this is the last guard.
    spdlog::error("{} {} failed outside its handler: {}", pending.request.method, pending.request.target, e.what());
    done(service::error_response({core::Code::internal, "internal error"}, pending.request.request_id));
  } catch (...) {
    done(service::error_response({core::Code::internal, "internal error"}, pending.request.request_id));
  }
}

// The answer may come from the I/O thread (inline calls, audit completions handed over), a
// worker, or the audit writer: whichever comes first counts.
void Server::answer(Pending& pending, service::Response response) {
  if (pending.answered.exchange(true)) return;
  if (io_.get_executor().running_in_this_thread()) {
    finish(pending, std::move(response));
    return;
  }
  asio::post(io_, [this, &pending, r = std::move(response)]() mutable { finish(pending, std::move(r)); });
}

void Server::finish(Pending& pending, service::Response response) {
  pending.response = std::move(response);
  pending.response_ready = true;
  pending.wake_if_complete();
}

namespace {
struct SlotGuard {
  ConnectionBudget& budget;
  PeerKey key;
  ~SlotGuard() { budget.release(key); }
};
}  // namespace

asio::awaitable<void> Server::serve_unix(std::shared_ptr<SocketConnection<local::socket>> connection, Listener& listener) {
  auto& socket = connection->socket;
  auto peer = peer_credentials(socket.native_handle());
  if (!peer) co_return;
  const PeerKey key = peer_key_for_uid(peer->uid);
  boost::system::error_code ignored;
  switch (listener.budget.admit(key)) {
    case ConnectionBudget::Verdict::admitted:
      break;
    case ConnectionBudget::Verdict::listener_full:
      refuse_connection(socket.native_handle(), *listener.endpoint, service::Refusal::listener_full,
                        "too many connections on this socket; try again");
      socket.close(ignored);
      co_return;
    case ConnectionBudget::Verdict::uid_full:
      refuse_connection(socket.native_handle(), *listener.endpoint, service::Refusal::uid_connections,
                        "uid " + std::to_string(peer->uid) + " has too many connections open");
      socket.close(ignored);
      co_return;
  }
  SlotGuard slot{listener.budget, key};
  // Named, not a temporary in the co_await expression: GCC 12 destroys such temporaries twice.
  Origin origin;
  const core::Peer credentials = *peer;
  co_await serve_requests(*connection, socket, listener, credentials, key, std::move(origin));
}

asio::awaitable<void> Server::serve_tcp(std::shared_ptr<SocketConnection<tcp::socket>> connection, Listener& listener) {
  auto& socket = connection->socket;
  boost::system::error_code ec;
  const auto remote = socket.remote_endpoint(ec);
  if (ec) co_return;
  const PeerKey key = peer_key_for_address(remote.address());
  Origin origin;
  origin.address = remote.address().to_string() + ":" + std::to_string(remote.port());
  const auto verdict = listener.budget.admit(key);
  if (verdict != ConnectionBudget::Verdict::admitted) {
    const bool listener_full = verdict == ConnectionBudget::Verdict::listener_full;
    const auto reason = listener_full ? service::Refusal::listener_full : service::Refusal::uid_connections;
    const std::string why = listener_full ? "too many connections on this listener; try again"
                                          : origin.address + " has too many connections open";
    // A 429 needs the TLS handshake first; a TLS peer over its budget is only closed.
    if (listener.tls) metrics_.count_refusal(reason);
    else refuse_connection(socket.native_handle(), *listener.endpoint, reason, why);
    socket.close(ec);
    co_return;
  }
  SlotGuard slot{listener.budget, key};
  (void)socket.set_option(tcp::no_delay(true), ec);  // answers are one small write: send at once
  if (!listener.tls) {
    const core::Peer none{};
    co_await serve_requests(*connection, socket, listener, none, key, std::move(origin));
    co_return;
  }
  auto context = listener.tls;  // this connection keeps the context it started with
  TlsStream stream(socket, *context);
  // The handshake is the new connection's first bytes: the same deadline as a first request byte.
  connection->deadline = SteadyClock::now() + limits_.first_byte_timeout;
  co_await stream.async_handshake(asio::ssl::stream_base::server, asio::redirect_error(asio::use_awaitable, ec));
  connection->deadline = SteadyClock::time_point::max();
  if (ec) {
    if (connection->timed_out) metrics_.count_refusal(service::Refusal::too_slow);
    spdlog::info("TLS handshake with {} on {} failed: {}", origin.address, listener.path, ec.message());
    socket.close(ec);
    co_return;
  }
  origin.tls_client_subject = peer_certificate_subject(stream.native_handle());
  if (!listener.accepted_client_subject.empty() &&
      !subject_has_rdns(origin.tls_client_subject, listener.accepted_client_subject)) {
    spdlog::warn("TLS client {} presented subject '{}', not the accepted '{}': closed", origin.address,
                 origin.tls_client_subject, listener.accepted_client_subject);
    socket.close(ec);
    co_return;
  }
  const core::Peer none{};
  co_await serve_requests(*connection, stream, listener, none, key, std::move(origin));
}

template <class Stream>
asio::awaitable<void> Server::serve_requests(Connection& connection_ref, Stream& stream, Listener& listener,
                                             core::Peer peer_value, PeerKey key, Origin origin) {
  Connection* connection = &connection_ref;
  const core::Peer* peer = &peer_value;
  auto& socket = lowest(stream);
  RequestReader reader(listener.http_limits, RequestReader::NoBuffer{});  // lent from read_buffers_ per request
  std::string out;
  bool first_request = true;
  bool linger = false;
  boost::system::error_code ec;
  for (;;) {
    if (draining_) break;
    connection->busy = false;
    if (reader.buffered() == 0) {
      // A new connection must start its request soon; a kept-alive one may rest for idle_timeout.
      connection->deadline = SteadyClock::now() + (first_request ? limits_.first_byte_timeout : limits_.idle_timeout);
      // Idle: wait for the first byte without holding a read buffer.
      read_buffers_.give_back(reader.take_idle_buffer());
      if constexpr (kWaitsIdle<Stream>)
        co_await socket.async_wait(socket.wait_read, asio::redirect_error(asio::use_awaitable, ec));
      if (!ec) {
        reader.give_buffer(read_buffers_.take());
        auto space = asio::buffer(reader.space().data(), reader.space().size());
        reader.commit(co_await stream.async_read_some(space, asio::redirect_error(asio::use_awaitable, ec)));
      }
      if (ec) {
        if (connection->timed_out && first_request) metrics_.count_refusal(service::Refusal::too_slow);
        break;
      }
    }
    connection->busy = true;
    first_request = false;
    const auto deadline = SteadyClock::now() + limits_.request_timeout;

    HttpRequestParser& parser = reader.request();
    bool continue_sent = false;
    HttpRequestParser::Progress progress;
    while ((progress = reader.step()) == HttpRequestParser::Progress::need_more) {
      connection->deadline = deadline;
      if (parser.expects_continue() && parser.is_header_done() && !continue_sent) {
        continue_sent = true;
        auto interim = asio::buffer(kContinueResponse.data(), kContinueResponse.size());
        co_await asio::async_write(stream, interim, asio::redirect_error(asio::use_awaitable, ec));
        if (ec) break;
      }
      auto space = asio::buffer(reader.space().data(), reader.space().size());
      std::size_t n = co_await stream.async_read_some(space, asio::redirect_error(asio::use_awaitable, ec));
      if (ec) {  // closed, or too slow (slowloris): nothing complete to answer
        if (connection->timed_out) metrics_.count_refusal(service::Refusal::too_slow);
        break;
      }
      reader.commit(n);
    }
    if (ec) break;
    connection->deadline = SteadyClock::time_point::max();  // the service has it now

    Pending pending(io_.get_executor());
    pending.endpoint = listener.endpoint;
    pending.key = key;
    pending.origin = origin;
    pending.origin.raw_target = parser.target();
    pending.origin.fields = &parser.fields();

    auto& request = pending.request;
    request.peer = *peer;
    request.request_id = service::choose_request_id(parser.request_id());
    request.method = parser.method();
    request.target = parser.target().substr(0, parser.target().find('?'));
    bool keep_alive = false;
    std::optional<core::Error> refusal;
    if (progress == HttpRequestParser::Progress::refused) {
      refusal = refusal_error(parser.refusal());
      metrics_.count_refusal(parser.refusal().status == 413 ? service::Refusal::body_too_large
                                                            : service::Refusal::malformed_http);
      linger = true;  // the client may still be sending: let it read the answer
      if (parser.refusal().status == 400 && parser.refusal().message.empty())
        refusal->message = "malformed HTTP request";
    } else {
      keep_alive = parser.keep_alive();
      request.body = std::move(parser.body());
      // A batch can keep the token busy for a while: it goes to the pool, so single requests
      // running on the I/O thread never wait behind it.
      pending.inline_call = listener.inline_calls && !may_be_batch(std::string_view(request.body.data(), request.body.size()));
      // The rate is for services; operators on the admin socket have their own budget.
      if (listener.rate_limited && rate_.enabled() && !rate_.allow(key, SteadyClock::now(), rate_cost(std::string_view(request.body.data(), request.body.size())))) {
        metrics_.count_refusal(service::Refusal::uid_rate);
        refusal = core::Error{core::Code::resource_exhausted,
                              describe_peer(key, origin) + " is over its request rate; slow down"};
      } else if (listener.in_flight >= listener.max_in_flight) {
        metrics_.count_refusal(service::Refusal::in_flight);
        refusal = core::Error{core::Code::resource_exhausted, "too many requests in flight; try again"};
      }
    }

    ++listener.in_flight;
    ++in_flight_;
    metrics_.in_flight(1);
    if (refusal) {
      pending.worker_done = true;
      listener.endpoint->refuse(request, pending.origin, *refusal,
                                [this, &pending](service::Response r) { answer(pending, std::move(r)); });
    } else {
      submit(pending);
    }
    while (!(pending.response_ready && pending.worker_done)) {
      pending.wake.expires_at(SteadyClock::time_point::max());
      boost::system::error_code woken;
      co_await pending.wake.async_wait(asio::redirect_error(asio::use_awaitable, woken));
    }
    --listener.in_flight;
    --in_flight_;
    metrics_.in_flight(-1);
    metrics_.count_response(pending.response.status);

    if (draining_) keep_alive = false;
    render_response(pending.response, request.request_id, keep_alive, out);
    // Bodies carry plaintext and keys: wipe each copy before its memory goes back.
    wipe(request.body);
    wipe(pending.response.body);
    connection->deadline = SteadyClock::now() + limits_.request_timeout;
    auto bytes = asio::buffer(out.data(), out.size());
    co_await asio::async_write(stream, bytes, asio::redirect_error(asio::use_awaitable, ec));
    wipe(out);
    out.clear();
    if (ec || !keep_alive) break;
    reader.next();
  }
  connection->busy = false;
  boost::system::error_code ignored;
  if (linger && !ec) {
    // Lingering close: the client may still be sending the body we refused. Closing with unread
    // data would reset the connection and the client would never see our answer, so stop
    // sending, then read and drop what comes for a short while.
    socket.shutdown(socket.shutdown_send, ignored);
    // A pooled buffer, not one in the coroutine frame: every connection's frame would carry it.
    std::string sink = read_buffers_.take();
    std::size_t drained = 0;
    connection->deadline = SteadyClock::now() + std::chrono::seconds(1);
    while (drained < kLingerBytes) {
      auto space = asio::buffer(sink.data(), sink.size());
      std::size_t n = co_await socket.async_read_some(space, asio::redirect_error(asio::use_awaitable, ignored));
      if (ignored) break;
      drained += n;
    }
    wipe(sink);  // what a refused body carried
    read_buffers_.give_back(std::move(sink));
  }
  connection->deadline = SteadyClock::time_point::max();
  read_buffers_.give_back(reader.take_idle_buffer());
  socket.shutdown(socket.shutdown_both, ignored);
  socket.close(ignored);
}

void Server::maybe_drained() {
  if (!draining_ || open_connections_ != 0) return;
  sweep_.cancel();  // its loop ends: nothing is left to time out
  if (on_drained_) std::exchange(on_drained_, nullptr)();
}

void Server::drain(std::function<void()> on_drained) {
  if (draining_) return;
  draining_ = true;
  on_drained_ = std::move(on_drained);
  for (auto& l : listeners_) {
    boost::system::error_code ec;
    if (l->unix_acceptor) {
      l->unix_acceptor->close(ec);
      if (l->remove_on_close) ::unlink(l->path.c_str());
    }
    if (l->tcp_acceptor) l->tcp_acceptor->close(ec);
  }
  // Idle connections wait in a read that would never end: close them now. Busy ones finish
  // their request and close after the response.
  for (auto& weak : connections_)
    if (auto c = weak.lock(); c && !c->busy) c->cancel();
  maybe_drained();
}

asio::awaitable<void> Server::sweep_loop() {
  boost::system::error_code ignored;
  while (!(draining_ && open_connections_ == 0)) {
    sweep_.expires_after(kSweepInterval);
    co_await sweep_.async_wait(asio::redirect_error(asio::use_awaitable, ignored));
    const auto now = SteadyClock::now();
    connections_.remove_if([](const auto& weak) { return weak.expired(); });
    for (auto& weak : connections_) {
      auto c = weak.lock();
      if (!c || now < c->deadline) continue;
      c->timed_out = true;
      c->deadline = SteadyClock::time_point::max();
      c->cancel();
    }
  }
}

}  // namespace custody::transport
