#include "daemon/transport/unix_listener.h"

#include <grp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

namespace custody::transport {
namespace {

// True when something accepts connections on the path: another daemon is serving it.
bool in_use(const std::string& path) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
  bool live = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  ::close(fd);
  return live;
}

}  // namespace

Expected<void, std::string> open_listener(boost::asio::local::stream_protocol::acceptor& acceptor,
                                          const SocketSpec& spec) {
  namespace fs = std::filesystem;
  if (spec.path.size() >= sizeof(sockaddr_un{}.sun_path))
    return unexpected("socket path " + spec.path + " is too long for a Unix socket");
  std::error_code ec;
  auto parent = fs::path(spec.path).parent_path();
  if (!parent.empty() && !fs::exists(parent, ec)) {
    fs::create_directories(parent, ec);
    if (ec) return unexpected("cannot create directory " + parent.string() + ": " + ec.message());
  }
  struct stat st {};
  if (::lstat(spec.path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) return unexpected(spec.path + " exists and is not a socket; remove it or choose another path");
    if (in_use(spec.path)) return unexpected("another process is serving " + spec.path + "; is custodyd already running?");
    ::unlink(spec.path.c_str());
  }
  std::optional<gid_t> gid;
  if (spec.group) {
    struct group* g = ::getgrnam(spec.group->c_str());
    if (!g) return unexpected("no such group '" + *spec.group + "' for socket " + spec.path);
    gid = g->gr_gid;
  }
  boost::system::error_code bec;
  const mode_t old_mask = ::umask(0177);
  acceptor.open(boost::asio::local::stream_protocol(), bec);
  if (!bec) acceptor.bind(boost::asio::local::stream_protocol::endpoint(spec.path), bec);
  ::umask(old_mask);
  if (bec) return unexpected("cannot bind " + spec.path + ": " + bec.message());
  if (gid && ::chown(spec.path.c_str(), static_cast<uid_t>(-1), *gid) != 0)
    return unexpected("cannot give " + spec.path + " to group " + *spec.group + ": " + std::strerror(errno));
  if (::chmod(spec.path.c_str(), spec.mode) != 0)
    return unexpected("cannot set the mode of " + spec.path + ": " + std::strerror(errno));
  acceptor.listen(boost::asio::socket_base::max_listen_connections, bec);
  if (bec) return unexpected("cannot listen on " + spec.path + ": " + bec.message());
  return {};
}

std::optional<core::Peer> peer_credentials(int fd) {
  ucred cred{};
  socklen_t len = sizeof cred;
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) return std::nullopt;
  return core::Peer{cred.uid, cred.gid, cred.pid};
}

}  // namespace custody::transport
