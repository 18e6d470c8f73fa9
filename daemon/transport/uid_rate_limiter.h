#pragma once
// Per-uid request rate: a token bucket for each uid that sends requests. Off when the rate is 0.
// Not thread-safe: the I/O thread owns it.
#include <sys/types.h>

#include "daemon/transport/peer_key.h"

#include <chrono>
#include <unordered_map>

namespace custody::transport {

class UidRateLimiter {
 public:
  using Clock = std::chrono::steady_clock;
  // burst 0: one second's worth of requests.
  UidRateLimiter(double per_second, unsigned burst);

  bool enabled() const { return per_second_ > 0; }
  // Takes `cost` tokens from uid's bucket; false (and nothing taken) when there are not enough.
  bool allow(PeerKey uid, Clock::time_point now, double cost = 1);

 private:
  struct Bucket {
    double tokens;
    Clock::time_point updated;
  };
  double per_second_, burst_;
  std::unordered_map<PeerKey, Bucket> buckets_;
};

}  // namespace custody::transport
