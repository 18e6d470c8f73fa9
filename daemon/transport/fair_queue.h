#pragma once
// Requests waiting for a worker, served in turns across peers (uids): each uid with something
// waiting gets one request in turn, so one busy peer — many connections, huge batches — delays
// another by at most one of its own requests, not by its whole backlog. Within a uid, first in,
// first out, which also takes turns across that uid's connections (each has one request queued at
// most). Not thread-safe: the I/O thread owns it.
#include <sys/types.h>

#include "daemon/transport/peer_key.h"

#include <cstddef>
#include <deque>
#include <unordered_map>

namespace custody::transport {

template <class T>
class FairQueue {
 public:
  void push(PeerKey uid, T* item) {
    auto& queue = by_uid_[uid];
    if (queue.empty()) turns_.push_back(uid);
    queue.push_back(item);
    ++size_;
  }

  // The next item in turn, or nullptr when nothing waits.
  T* pop() {
    if (turns_.empty()) return nullptr;
    const PeerKey uid = turns_.front();
    turns_.pop_front();
    auto it = by_uid_.find(uid);
    T* item = it->second.front();
    it->second.pop_front();
    if (it->second.empty()) by_uid_.erase(it);
    else turns_.push_back(uid);
    --size_;
    return item;
  }

  std::size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }

 private:
  std::unordered_map<PeerKey, std::deque<T*>> by_uid_;
  std::deque<PeerKey> turns_;  // uids with something waiting, in the order of their next turn
  std::size_t size_ = 0;
};

}  // namespace custody::transport
