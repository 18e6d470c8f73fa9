#include "daemon/service/metrics.h"

namespace custody::service {

void Metrics::count_response(int status) {
  std::size_t c = static_cast<std::size_t>(status / 100);
  if (c < responses_.size()) responses_[c].fetch_add(1, std::memory_order_relaxed);
}

}  // namespace custody::service
