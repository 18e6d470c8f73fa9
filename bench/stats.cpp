#include "bench/stats.h"

#include <algorithm>
#include <cmath>

namespace custody::bench {

double quantile(const std::vector<double>& sorted_us, double q) {
  if (sorted_us.empty()) return 0;
  // Nearest rank: the smallest sample with at least q of the samples at or below it.
  const auto rank = static_cast<std::size_t>(std::ceil(q * static_cast<double>(sorted_us.size())));
  return sorted_us[std::clamp<std::size_t>(rank, 1, sorted_us.size()) - 1];
}

LatencySummary summarize(std::vector<double>& samples_us) {
  std::sort(samples_us.begin(), samples_us.end());
  return {quantile(samples_us, 0.50), quantile(samples_us, 0.99), quantile(samples_us, 0.999), samples_us.size()};
}

}  // namespace custody::bench
