#pragma once
// A latency histogram with fixed buckets from 50 µs to 5 s, updated from any thread without a
// lock (one atomic add per bucket, one for the sum), read as a Prometheus histogram. Lives in
// common/ because the token's session pool and the audit log time their calls with it too, and
// neither may depend on the service layer that prints it.
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>

namespace custody {

class LatencyHistogram {
 public:
  // Upper bounds in nanoseconds, and as the `le` label prints them (seconds).
  static constexpr std::array<std::uint64_t, 16> kBoundsNs = {
      50'000,     100'000,     250'000,     500'000,     1'000'000,     2'500'000,     5'000'000,     10'000'000,
      25'000'000, 50'000'000, 100'000'000, 250'000'000, 500'000'000, 1'000'000'000, 2'500'000'000, 5'000'000'000};
  static constexpr std::array<const char*, 16> kBoundLabels = {"5e-05", "0.0001", "0.00025", "0.0005",
                                                                "0.001", "0.0025", "0.005",   "0.01",
                                                                "0.025", "0.05",   "0.1",     "0.25",
                                                                "0.5",   "1",      "2.5",     "5"};

  void observe(std::chrono::nanoseconds elapsed) {
    const auto ns = static_cast<std::uint64_t>(elapsed.count() < 0 ? 0 : elapsed.count());
    std::size_t i = 0;
    while (i < kBoundsNs.size() && ns > kBoundsNs[i]) ++i;
    buckets_[i].fetch_add(1, std::memory_order_relaxed);
    sum_ns_.fetch_add(ns, std::memory_order_relaxed);
  }

  // Cumulative counts, as Prometheus wants them; the last one (+Inf) is the count. Taken from
  // the buckets alone, so _count always equals the +Inf bucket even while others observe.
  struct Snapshot {
    std::array<std::uint64_t, kBoundsNs.size() + 1> cumulative{};
    double sum_seconds = 0;
    std::uint64_t count() const { return cumulative.back(); }
  };
  Snapshot snapshot() const {
    Snapshot s;
    std::uint64_t running = 0;
    for (std::size_t i = 0; i < buckets_.size(); ++i) {
      running += buckets_[i].load(std::memory_order_relaxed);
      s.cumulative[i] = running;
    }
    s.sum_seconds = static_cast<double>(sum_ns_.load(std::memory_order_relaxed)) / 1e9;
    return s;
  }

 private:
  std::array<std::atomic<std::uint64_t>, kBoundsNs.size() + 1> buckets_{};  // not cumulative; last: over 5 s
  std::atomic<std::uint64_t> sum_ns_{0};
};

// Times the scope it lives in into a histogram.
class ScopedLatency {
 public:
  explicit ScopedLatency(LatencyHistogram& into) : into_(into), start_(std::chrono::steady_clock::now()) {}
  ~ScopedLatency() { into_.observe(std::chrono::steady_clock::now() - start_); }
  ScopedLatency(const ScopedLatency&) = delete;
  ScopedLatency& operator=(const ScopedLatency&) = delete;

 private:
  LatencyHistogram& into_;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace custody
