#pragma once
// Counters for GET /metrics (Prometheus text exposition format 0.0.4). Lock-free on the request
// path: one atomic add per response.
#include <array>
#include <atomic>
#include <cstdint>
#include <iterator>
#include <string>

namespace custody::service {

// Why the transport turned a connection or a request away before (or instead of) running it.
enum class Refusal {
  listener_full,     // the socket's connection budget
  uid_connections,   // one uid's share of the connections
  uid_rate,          // limits.uid_requests_per_second
  in_flight,         // limits.max_in_flight
  queue_timeout,     // waited limits.request_timeout for a worker
  malformed_http,    // 400 from the HTTP parser
  body_too_large,    // 413
  too_slow,          // no first byte, or no whole request, within its deadline
};
inline constexpr const char* kRefusalNames[] = {"listener_full", "uid_connections", "uid_rate",       "in_flight",
                                                "queue_timeout", "malformed_http",  "body_too_large", "too_slow"};

class Metrics {
 public:
  void count_refusal(Refusal why) { refusals_[static_cast<std::size_t>(why)].fetch_add(1, std::memory_order_relaxed); }
  std::uint64_t refusals(Refusal why) const { return refusals_[static_cast<std::size_t>(why)].load(); }
  void count_response(int status);
  void in_flight(int delta) { in_flight_.fetch_add(delta, std::memory_order_relaxed); }
  std::uint64_t responses(int status_class) const { return responses_[static_cast<std::size_t>(status_class)].load(); }
  std::int64_t in_flight() const { return in_flight_.load(); }
  // Connections turned away at a connection budget, whichever one.
  std::uint64_t rejected_connections() const {
    return refusals(Refusal::listener_full) + refusals(Refusal::uid_connections);
  }

 private:
  std::array<std::atomic<std::uint64_t>, 6> responses_{};  // by status class 1xx..5xx
  std::atomic<std::int64_t> in_flight_{0};
  std::array<std::atomic<std::uint64_t>, std::size(kRefusalNames)> refusals_{};
};

}  // namespace custody::service
