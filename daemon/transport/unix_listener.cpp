#include "daemon/transport/unix_listener.h"

#include <grp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <fcntl.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string_view>

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
  ::close(fd);  // a probe that sent nothing: its close has nothing to report
  return live;
}

// sd_listen_fds(3): passed descriptors start at 3.
constexpr int kFirstInheritedFd = 3;

std::optional<long> parse_number(const char* text) {
  if (!text) return std::nullopt;
  std::string_view s(text);
  long value = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
  if (ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
  return value;
}

// The path a Unix socket is bound to; empty for an unnamed or abstract one.
Expected<std::string, std::string> bound_path(int fd) {
  sockaddr_un addr{};
  socklen_t len = sizeof addr;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0)
    return unexpected("getsockname(" + std::to_string(fd) + "): " + std::strerror(errno));
  if (addr.sun_family != AF_UNIX) return unexpected("fd " + std::to_string(fd) + " is not a Unix socket");
  const std::size_t path_len = len > offsetof(sockaddr_un, sun_path) ? len - offsetof(sockaddr_un, sun_path) : 0;
  if (path_len == 0 || addr.sun_path[0] == '\0') return std::string();
  return std::string(addr.sun_path, ::strnlen(addr.sun_path, path_len));
}

Expected<void, std::string> check_listening_stream(int fd) {
  int type = 0, listening = 0;
  socklen_t len = sizeof type;
  if (::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0)
    return unexpected("fd " + std::to_string(fd) + " is not a socket: " + std::strerror(errno));
  len = sizeof listening;
  if (::getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) != 0)
    return unexpected("getsockopt(SO_ACCEPTCONN) on fd " + std::to_string(fd) + ": " + std::strerror(errno));
  if (type != SOCK_STREAM || !listening)
    return unexpected("fd " + std::to_string(fd) + " is not a listening stream socket (use ListenStream= in the .socket unit)");
  return {};
}

// The same path, or two paths to one socket file (e.g. /var/run/... and /run/...).
bool same_socket_file(const std::string& a, const std::string& b) {
  if (a.empty() || b.empty()) return false;
  if (a == b) return true;
  struct stat sa {}, sb {};
  return ::stat(a.c_str(), &sa) == 0 && ::stat(b.c_str(), &sb) == 0 && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

}  // namespace

Expected<std::vector<InheritedSocket>, std::string> take_inherited_sockets() {
  const auto pid = parse_number(std::getenv("LISTEN_PID"));
  const auto count = parse_number(std::getenv("LISTEN_FDS"));
  const char* names_env = std::getenv("LISTEN_FDNAMES");
  const std::string names = names_env ? names_env : "";
  ::unsetenv("LISTEN_PID");
  ::unsetenv("LISTEN_FDS");
  ::unsetenv("LISTEN_FDNAMES");
  // Meant for another process (a parent that exported them): not ours to take.
  if (!pid || *pid != ::getpid() || !count) return std::vector<InheritedSocket>{};
  if (*count < 0 || *count > 64) return unexpected("LISTEN_FDS=" + std::to_string(*count) + " is out of range");
  std::vector<InheritedSocket> sockets;
  std::size_t name_start = 0;
  for (int i = 0; i < *count; ++i) {
    const int fd = kFirstInheritedFd + i;
    InheritedSocket s;
    s.fd = fd;
    if (name_start <= names.size()) {
      const auto end = std::min(names.find(':', name_start), names.size());
      s.name = names.substr(name_start, end - name_start);
      name_start = end + 1;
    }
    const int flags = ::fcntl(fd, F_GETFD);
    if (flags < 0 || ::fcntl(fd, F_SETFD, flags | FD_CLOEXEC) != 0)
      return unexpected("systemd passed fd " + std::to_string(fd) + " but it is not open: " + std::strerror(errno));
    if (auto ok = check_listening_stream(fd); !ok) return unexpected(ok.error());
    auto path = bound_path(fd);
    if (!path) return unexpected(path.error());
    s.path = std::move(*path);
    sockets.push_back(std::move(s));
  }
  return sockets;
}

Expected<std::optional<InheritedSocket>, std::string> claim_inherited_socket(std::vector<InheritedSocket>& sockets,
                                                                             const std::string& name,
                                                                             const std::string& path) {
  auto take = [&](auto it) -> std::optional<InheritedSocket> {
    InheritedSocket s = std::move(*it);
    sockets.erase(it);
    return s;
  };
  for (auto it = sockets.begin(); it != sockets.end(); ++it) {
    if (it->name != name) continue;
    if (!same_socket_file(it->path, path))
      return unexpected("systemd passed the socket named '" + name + "' bound to '" + it->path +
                        "', but the configuration says " + path + "; make ListenStream= and sockets." + name +
                        ".path agree");
    return take(it);
  }
  for (auto it = sockets.begin(); it != sockets.end(); ++it)
    if (same_socket_file(it->path, path)) return take(it);
  return std::optional<InheritedSocket>{};
}

Expected<void, std::string> open_listener(boost::asio::local::stream_protocol::acceptor& acceptor,
                                          const SocketSpec& spec) {
  namespace fs = std::filesystem;
  if (spec.inherited_fd >= 0) {
    boost::system::error_code ec;
    acceptor.assign(boost::asio::local::stream_protocol(), spec.inherited_fd, ec);
    if (ec) return unexpected("cannot adopt the socket systemd passed for " + spec.path + ": " + ec.message());
    return {};
  }
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
    // A stale socket file of a daemon that is gone: bind would fail on it with a vaguer message.
    if (::unlink(spec.path.c_str()) != 0 && errno != ENOENT)
      return unexpected("cannot remove the stale socket " + spec.path + ": " + std::strerror(errno));
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
  ::umask(old_mask);  // umask cannot fail
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
