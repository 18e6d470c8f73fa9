#include "daemon/kms/kms_server.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <grpcpp/resource_quota.h>
#include <grpcpp/server.h>
#include <grpcpp/server_builder.h>
#include <grpcpp/server_posix.h>
#include <spdlog/spdlog.h>

#include <algorithm>

namespace custody::kms {

namespace asio = boost::asio;
using local = asio::local::stream_protocol;

namespace {

constexpr auto kAcceptBackoff = std::chrono::milliseconds(100);
// Calls one connection may have open at once: kube-apiserver sends a few in parallel.
constexpr int kStreamsPerConnection = 32;

int millis(std::chrono::milliseconds d) {
  return static_cast<int>(std::min<std::chrono::milliseconds::rep>(d.count(), std::numeric_limits<int>::max()));
}

// gRPC's event engine expects a non-blocking descriptor; nothing custodyd runs may inherit it.
bool prepare_for_grpc(int fd) {
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0) return false;
  const int fd_flags = ::fcntl(fd, F_GETFD);
  return fd_flags >= 0 && ::fcntl(fd, F_SETFD, fd_flags | FD_CLOEXEC) == 0;
}

}  // namespace

KmsServer::KmsServer(asio::io_context& io, const KmsSettings& settings, KmsCore core, std::string path,
                     bool remove_on_close)
    : core_(std::move(core)),
      path_(std::move(path)),
      remove_on_close_(remove_on_close),
      acceptor_(io),
      backoff_(io),
      peers_(settings.max_connections, settings.max_connections_per_uid),
      runner_(core_.run_on_workers, settings.request_timeout),
      probe_(core_.data_plane, core_.audit, runner_, settings.key, settings.healthz_interval),
      service_(KmsParts{core_.registry, core_.data_plane, core_.audit, peers_, runner_, probe_, settings.key,
                        core_.metrics}) {}

KmsServer::~KmsServer() = default;

Expected<std::unique_ptr<KmsServer>, std::string> KmsServer::start(asio::io_context& io,
                                                                   const transport::SocketSpec& spec,
                                                                   const KmsSettings& settings, KmsCore core) {
  std::unique_ptr<KmsServer> server(new KmsServer(io, settings, std::move(core), spec.path, spec.inherited_fd < 0));
  grpc::ServerBuilder builder;
  builder.RegisterService(&server->service_);
  // No listening port: every connection comes in through AddInsecureChannelFromFd.
  builder.SetMaxReceiveMessageSize(static_cast<int>(std::min<std::size_t>(settings.max_message_bytes, INT32_MAX)));
  builder.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS, kStreamsPerConnection);
  builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_IDLE_MS, millis(settings.idle_timeout));
  // Each call holds a gRPC thread while it waits for the pool: the thread cap is the in-flight
  // limit, and a call past it is refused RESOURCE_EXHAUSTED rather than queued without bound.
  grpc::ResourceQuota quota("custody-kms");
  quota.SetMaxThreads(static_cast<int>(std::max(2u, settings.max_in_flight)));
  builder.SetResourceQuota(quota);
  server->grpc_ = builder.BuildAndStart();
  if (!server->grpc_) return unexpected(std::string("sockets.kms: the gRPC server did not start"));
  if (auto ok = transport::open_listener(server->acceptor_, spec); !ok) {
    server->grpc_->Shutdown();
    server->grpc_->Wait();
    return unexpected(ok.error());
  }
  server->accept_next();
  return server;
}

void KmsServer::accept_next() {
  acceptor_.async_accept([this](const boost::system::error_code& ec, local::socket socket) {
    if (!accepting_ || ec == asio::error::operation_aborted) return;
    if (!ec) {
      take(std::move(socket));
      accept_next();
      return;
    }
    // Out of descriptors or memory: retrying at once would spin.
    spdlog::warn("accept on {} failed: {}", path_, ec.message());
    backoff_.expires_after(kAcceptBackoff);
    backoff_.async_wait([this](const boost::system::error_code& waited) {
      if (!waited && accepting_) accept_next();
    });
  });
}

void KmsServer::take(local::socket socket) {
  boost::system::error_code ignored;
  auto peer = transport::peer_credentials(socket.native_handle());
  if (!peer) return;  // closed as socket goes out of scope
  switch (peers_.admit(socket.native_handle(), *peer)) {
    case KmsPeers::Verdict::admitted:
      break;
    // gRPC has no answer before the HTTP/2 preface: the client sees the connection close (UNAVAILABLE).
    case KmsPeers::Verdict::listener_full:
      core_.metrics.count_refusal(service::Refusal::listener_full);
      spdlog::warn("sockets.kms: connection of uid {} refused: the socket's connection limit is reached", peer->uid);
      return;
    case KmsPeers::Verdict::uid_full:
      core_.metrics.count_refusal(service::Refusal::uid_connections);
      spdlog::warn("sockets.kms: connection of uid {} refused: it has too many connections open", peer->uid);
      return;
  }
  if (!prepare_for_grpc(socket.native_handle())) {
    spdlog::warn("sockets.kms: cannot make a connection non-blocking; closed");
    return;  // its slot is given back once the fd is closed (KmsPeers sees it gone)
  }
  const int fd = socket.release(ignored);
  if (ignored || fd < 0) return;
  grpc::AddInsecureChannelFromFd(grpc_.get(), fd);
}

void KmsServer::stop_accepting() {
  if (!accepting_) return;
  accepting_ = false;
  boost::system::error_code ignored;
  acceptor_.close(ignored);
  backoff_.cancel();
  if (remove_on_close_) ::unlink(path_.c_str());
}

void KmsServer::shutdown(std::chrono::milliseconds grace) {
  if (!grpc_) return;
  grpc_->Shutdown(std::chrono::system_clock::now() + grace);
  grpc_->Wait();
  grpc_.reset();
}

}  // namespace custody::kms
