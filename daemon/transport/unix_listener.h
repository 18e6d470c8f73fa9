#pragma once
// Unix socket files with the configured owner group and mode, sockets handed over by systemd
// (socket activation), and the peer's credentials.
#include <sys/types.h>

#include <boost/asio/local/stream_protocol.hpp>
#include <optional>
#include <string>
#include <vector>

#include "common/expected.h"
#include "daemon/core/keys/policy.h"

namespace custody::transport {

struct SocketSpec {
  std::string path;
  mode_t mode = 0660;
  std::optional<std::string> group;
  // A listening socket systemd passed for this path (see take_inherited_sockets), or -1 to bind
  // the path here. An inherited socket keeps the mode and group its .socket unit gave it.
  int inherited_fd = -1;
};

// A listening socket passed by the service manager: fd 3 onwards, named by LISTEN_FDNAMES
// (FileDescriptorName= in the .socket unit), bound to path.
struct InheritedSocket {
  int fd = -1;
  std::string name;
  std::string path;
};

// The sd_listen_fds protocol, without libsystemd: when LISTEN_PID is this process, takes the
// LISTEN_FDS sockets from fd 3 on (close-on-exec from now on) and unsets LISTEN_PID, LISTEN_FDS
// and LISTEN_FDNAMES, so that nothing started later mistakes them for its own. None passed: an
// empty list. A passed fd that is not a listening Unix stream socket is an error.
Expected<std::vector<InheritedSocket>, std::string> take_inherited_sockets();

// Removes from `sockets` and returns the one named `name`, else the one bound to `path`.
// Matched by name but bound elsewhere is an error: clients look for the configured path.
Expected<std::optional<InheritedSocket>, std::string> claim_inherited_socket(std::vector<InheritedSocket>& sockets,
                                                                             const std::string& name,
                                                                             const std::string& path);

// Listens on spec.inherited_fd as it is (no bind, chmod, chown or unlink: the file belongs to
// the .socket unit), or binds and listens on spec.path.
// Binding: a stale socket file is replaced; a live one (another daemon) is an error.
// The file never exists with looser permissions than asked: it is bound under a strict umask.
Expected<void, std::string> open_listener(boost::asio::local::stream_protocol::acceptor& acceptor,
                                          const SocketSpec& spec);

// SO_PEERCRED of a connected Unix socket.
std::optional<core::Peer> peer_credentials(int fd);

}  // namespace custody::transport
