#pragma once
// The KMS v2 socket (sockets.kms). custodyd accepts on it itself, on the I/O thread, so that it
// can read each peer's SO_PEERCRED (gRPC's auth context has none for a Unix socket) and hold
// the connection budget of the other sockets, then hands the connection to an in-process gRPC
// server with AddInsecureChannelFromFd. gRPC reads, writes and runs the handlers on its own
// threads; the handlers take their token work to the worker pool (TokenRunner).
#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <memory>
#include <string>

#include "common/expected.h"
#include "daemon/kms/healthz_probe.h"
#include "daemon/kms/kms_peers.h"
#include "daemon/kms/kms_service.h"
#include "daemon/kms/kms_settings.h"
#include "daemon/kms/token_runner.h"
#include "daemon/service/metrics.h"
#include "daemon/transport/unix_listener.h"

namespace grpc {
class Server;
}

namespace custody::kms {

struct KmsCore {
  core::KeyRegistry& registry;
  core::DataPlane& data_plane;
  core::AuditLog& audit;
  service::Metrics& metrics;
  TokenRunner::Post run_on_workers;  // how the service socket's worker pool takes a job
};

class KmsServer {
 public:
  // Starts gRPC and listens on spec; accepting runs on io.
  static Expected<std::unique_ptr<KmsServer>, std::string> start(boost::asio::io_context& io,
                                                                 const transport::SocketSpec& spec,
                                                                 const KmsSettings& settings, KmsCore core);
  ~KmsServer();

  // On the I/O thread (the drain): closes the socket, so the I/O loop can run out of work.
  void stop_accepting();
  // After the I/O loop ended and before the worker pool is joined: lets calls in flight finish
  // for up to grace, then cancels the rest and waits for their handlers.
  void shutdown(std::chrono::milliseconds grace);

  const std::string& path() const { return path_; }

 private:
  KmsServer(boost::asio::io_context& io, const KmsSettings& settings, KmsCore core, std::string path, bool remove_on_close);
  void accept_next();
  void take(boost::asio::local::stream_protocol::socket socket);

  KmsCore core_;
  const std::string path_;
  const bool remove_on_close_;
  boost::asio::local::stream_protocol::acceptor acceptor_;
  boost::asio::steady_timer backoff_;
  bool accepting_ = true;
  KmsPeers peers_;
  TokenRunner runner_;
  HealthzProbe probe_;
  KmsService service_;
  std::unique_ptr<grpc::Server> grpc_;
};

}  // namespace custody::kms
