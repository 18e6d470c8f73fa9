#pragma once
// Who is at the other end of each connection custodyd handed to gRPC. gRPC names the peer of a
// channel made from a file descriptor "fd:N" and keeps fd N open while any call on it lives, so a
// call finds its connection's SO_PEERCRED by N. The socket's inode tells that connection from a
// later one that got the same number after gRPC closed the first. The connection budget of the
// socket (total and per uid) lives here too: gRPC says nothing when it closes a connection, so a
// slot is given back once its fd no longer names the socket it was taken for.
#include <sys/types.h>

#include <mutex>
#include <optional>
#include <string_view>
#include <unordered_map>

#include "daemon/core/keys/policy.h"
#include "daemon/transport/connection_budget.h"

namespace custody::kms {

class KmsPeers {
 public:
  KmsPeers(unsigned total, unsigned per_uid) : budget_(total, per_uid) {}

  using Verdict = transport::ConnectionBudget::Verdict;
  // Forgets the connections gRPC has closed since, then takes a slot for this one.
  Verdict admit(int fd, const core::Peer& peer);
  // The credentials of the connection a call came on, from ServerContext::peer(); nullopt when
  // it is not a connection admitted here.
  std::optional<core::Peer> find(std::string_view grpc_peer) const;
  unsigned open();

 private:
  struct Connection {
    dev_t device;
    ino_t inode;
    core::Peer peer;
  };
  void forget_closed();  // mutex_ held

  mutable std::mutex mutex_;
  std::unordered_map<int, Connection> by_fd_;
  transport::ConnectionBudget budget_;
};

}  // namespace custody::kms
