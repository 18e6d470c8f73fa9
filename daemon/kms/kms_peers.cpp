#include "daemon/kms/kms_peers.h"

#include <sys/stat.h>

#include <charconv>

namespace custody::kms {
namespace {

// The socket fd currently names, if it is one.
std::optional<struct stat> socket_identity(int fd) {
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISSOCK(st.st_mode)) return std::nullopt;
  return st;
}

std::optional<int> fd_of(std::string_view grpc_peer) {
  constexpr std::string_view prefix = "fd:";
  if (!grpc_peer.starts_with(prefix)) return std::nullopt;
  grpc_peer.remove_prefix(prefix.size());
  int fd = -1;
  auto [end, ec] = std::from_chars(grpc_peer.data(), grpc_peer.data() + grpc_peer.size(), fd);
  if (ec != std::errc{} || end != grpc_peer.data() + grpc_peer.size() || fd < 0) return std::nullopt;
  return fd;
}

}  // namespace

void KmsPeers::forget_closed() {
  for (auto it = by_fd_.begin(); it != by_fd_.end();) {
    auto now = socket_identity(it->first);
    if (now && now->st_dev == it->second.device && now->st_ino == it->second.inode) {
      ++it;
      continue;
    }
    budget_.release(it->second.peer.uid);
    it = by_fd_.erase(it);
  }
}

KmsPeers::Verdict KmsPeers::admit(int fd, const core::Peer& peer) {
  auto identity = socket_identity(fd);
  if (!identity) return Verdict::listener_full;  // not a socket: cannot happen for an accepted fd
  std::lock_guard lock(mutex_);
  forget_closed();
  const Verdict verdict = budget_.admit(peer.uid);
  if (verdict == Verdict::admitted) by_fd_[fd] = Connection{identity->st_dev, identity->st_ino, peer};
  return verdict;
}

std::optional<core::Peer> KmsPeers::find(std::string_view grpc_peer) const {
  auto fd = fd_of(grpc_peer);
  if (!fd) return std::nullopt;
  auto identity = socket_identity(*fd);
  if (!identity) return std::nullopt;
  std::lock_guard lock(mutex_);
  auto it = by_fd_.find(*fd);
  if (it == by_fd_.end() || it->second.device != identity->st_dev || it->second.inode != identity->st_ino)
    return std::nullopt;
  return it->second.peer;
}

unsigned KmsPeers::open() {
  std::lock_guard lock(mutex_);
  forget_closed();
  return budget_.open();
}

}  // namespace custody::kms
