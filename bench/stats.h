#pragma once
// Latency percentiles from plain sorted samples (microseconds).
#include <cstddef>
#include <vector>

namespace custody::bench {

struct LatencySummary {
  double p50_us = 0, p99_us = 0, p999_us = 0;
  std::size_t samples = 0;
};

// Sorts the samples in place; all zero when there are none.
LatencySummary summarize(std::vector<double>& samples_us);

// The q-quantile (0..1) of sorted samples, nearest rank.
double quantile(const std::vector<double>& sorted_us, double q);

}  // namespace custody::bench
