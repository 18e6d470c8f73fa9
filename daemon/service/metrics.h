#pragma once
// Counters for GET /metrics (Prometheus text exposition format 0.0.4). Lock-free on the request
// path: one atomic add per response.
#include <array>
#include <atomic>
#include <cstdint>
#include <string>

namespace custody::service {

class Metrics {
 public:
  void count_response(int status);
  void in_flight(int delta) { in_flight_.fetch_add(delta, std::memory_order_relaxed); }
  void count_rejected_connection() { rejected_connections_.fetch_add(1, std::memory_order_relaxed); }
  std::uint64_t responses(int status_class) const { return responses_[static_cast<std::size_t>(status_class)].load(); }
  std::int64_t in_flight() const { return in_flight_.load(); }
  std::uint64_t rejected_connections() const { return rejected_connections_.load(); }

 private:
  std::array<std::atomic<std::uint64_t>, 6> responses_{};  // by status class 1xx..5xx
  std::atomic<std::int64_t> in_flight_{0};
  std::atomic<std::uint64_t> rejected_connections_{0};
};

}  // namespace custody::service
