#pragma once
// Latency percentiles from plain sorted samples (microseconds).
#include <chrono>
#include <cstddef>
#include <vector>

namespace custody::bench {

struct LatencySummary {
  double p50_us = 0, p99_us = 0, p999_us = 0;
  std::size_t samples = 0;
};

// Sorts the samples in place; all zero when there are none.
LatencySummary summarize(std::vector<double>& samples_us);

// Times `samples` calls of step (false: stop, the step failed) into a row's ops/s and latency.
struct TimedSamples {
  std::vector<double> latencies_us;
  double elapsed_seconds = 0;
  bool completed = true;  // false when a step failed
};
template <class Step>
TimedSamples time_samples(unsigned samples, Step&& step) {
  TimedSamples t;
  t.latencies_us.reserve(samples);
  const auto begin = std::chrono::steady_clock::now();
  for (unsigned i = 0; i < samples && t.completed; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    t.completed = step();
    t.latencies_us.push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count());
  }
  t.elapsed_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - begin).count();
  return t;
}

// The q-quantile (0..1) of sorted samples, nearest rank.
double quantile(const std::vector<double>& sorted_us, double q);

}  // namespace custody::bench
