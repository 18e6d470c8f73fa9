#pragma once
// Unix socket files with the configured owner group and mode, and the peer's credentials.
#include <sys/types.h>

#include <boost/asio/local/stream_protocol.hpp>
#include <optional>
#include <string>

#include "common/expected.h"
#include "daemon/core/policy.h"

namespace custody::transport {

struct SocketSpec {
  std::string path;
  mode_t mode = 0660;
  std::optional<std::string> group;
};

// Binds and listens. A stale socket file is replaced; a live one (another daemon) is an error.
// The file never exists with looser permissions than asked: it is bound under a strict umask.
Expected<void, std::string> open_listener(boost::asio::local::stream_protocol::acceptor& acceptor,
                                          const SocketSpec& spec);

// SO_PEERCRED of a connected Unix socket.
std::optional<core::Peer> peer_credentials(int fd);

}  // namespace custody::transport
