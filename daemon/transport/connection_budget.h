#pragma once
// The connection slots of one listener: a total, and the share one uid may hold, so that a single
// local account cannot take every slot and lock the others out. Not thread-safe: the I/O thread
// owns it.
#include <sys/types.h>

#include "daemon/transport/peer_key.h"

#include <unordered_map>

namespace custody::transport {

class ConnectionBudget {
 public:
  ConnectionBudget(unsigned total, unsigned per_uid) : total_(total), per_uid_(per_uid) {}

  enum class Verdict { admitted, listener_full, uid_full };
  // Takes a slot for uid when one is free; release() gives it back.
  Verdict admit(PeerKey uid);
  void release(PeerKey uid);

  unsigned open() const { return open_; }
  unsigned open_for(PeerKey uid) const;

 private:
  unsigned total_, per_uid_;
  unsigned open_ = 0;
  std::unordered_map<PeerKey, unsigned> by_uid_;
};

}  // namespace custody::transport
