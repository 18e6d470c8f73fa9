#include "daemon/transport/uid_rate_limiter.h"

#include <algorithm>

namespace custody::transport {

namespace {
// Buckets of uids that have been quiet long enough to be full again carry no information; they
// are dropped when the map grows, so a parade of uids cannot grow it without bound.
constexpr std::size_t kPruneAbove = 4096;
}  // namespace

UidRateLimiter::UidRateLimiter(double per_second, unsigned burst)
    : per_second_(per_second), burst_(burst ? burst : std::max(1.0, per_second)) {}

bool UidRateLimiter::allow(PeerKey uid, Clock::time_point now, double cost) {
  if (!enabled()) return true;
  if (buckets_.size() > kPruneAbove) {
    std::erase_if(buckets_, [&](const auto& entry) {
      const double refill = std::chrono::duration<double>(now - entry.second.updated).count() * per_second_;
      return entry.second.tokens + refill >= burst_;
    });
  }
  auto [it, fresh] = buckets_.try_emplace(uid, Bucket{burst_, now});
  auto& b = it->second;
  if (!fresh) {
    const double elapsed = std::chrono::duration<double>(now - b.updated).count();
    b.tokens = std::min(burst_, b.tokens + std::max(0.0, elapsed) * per_second_);
    b.updated = now;
  }
  // A batch larger than the whole bucket passes when the bucket is full, and empties it.
  cost = std::min(cost, burst_);
  if (b.tokens < cost) return false;
  b.tokens -= cost;
  return true;
}

}  // namespace custody::transport
