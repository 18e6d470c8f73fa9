#pragma once
// Counters for GET /metrics (Prometheus text exposition format 0.0.4). Lock-free on the request
// path: atomic adds into series registered before serving (per route) or found under a shared
// lock (per key). Label values are bounded: a socket, a route's operation name, an HTTP status,
// a key name the registry knows (at most kMaxKeyLabels, the rest fold into "_other"), a reason
// from a fixed list. Peers and uids are never labels.
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <initializer_list>
#include <iterator>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>

#include "common/latency_histogram.h"
#include "daemon/core/error.h"
#include "daemon/core/keys/policy.h"

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

// Why a data-plane request on a key was refused (custody_denials_total{reason}).
enum class Denial {
  policy,           // the key's policy does not allow this peer this operation
  unknown_key,      // no such key (the caller heard "permission denied"); counted under key="_unknown"
  key_state,        // the key is disabled, pending destruction or destroyed
  version_retired,  // the blob's version is below min_decrypt_version, or destroyed
  usage_limit,      // the version has used up its encryptions (the AES-GCM invocation bound)
};
inline constexpr const char* kDenialNames[] = {"policy", "unknown_key", "key_state", "version_retired", "usage_limit"};

// Dual-control events counted as they happen (custody_admin_requests_total{event}); "expired" is
// counted from the stored requests, since a request expires without a call.
enum class AdminEvent { proposed, approved, executed, failed };
inline constexpr const char* kAdminEventNames[] = {"proposed", "approved", "executed", "failed"};

// Writes the text exposition: HELP and TYPE once per family, its samples right after, label
// values escaped.
class Exposition {
 public:
  using Labels = std::initializer_list<std::pair<std::string_view, std::string_view>>;
  void family(std::string_view name, std::string_view type, std::string_view help);
  void sample(std::string_view name, Labels labels, std::uint64_t value);
  void sample(std::string_view name, Labels labels, std::int64_t value);
  void sample(std::string_view name, Labels labels, double value);
  // name_bucket{..., le} for each bound and +Inf, name_sum, name_count.
  void histogram(std::string_view name, Labels labels, const LatencyHistogram::Snapshot& h);
  // A gauge or counter family with one unlabelled sample.
  template <class T>
  void single(std::string_view name, std::string_view type, std::string_view help, T value) {
    family(name, type, help);
    sample(name, {}, value);
  }
  std::string take() { return std::move(out_); }

 private:
  void series(std::string_view name, Labels labels, std::string_view extra_name = {}, std::string_view extra_value = {});
  std::string out_;
};

// The requests of one route's operation on one socket: by HTTP status, and their latency from
// arrival to the response (audit write included).
struct RequestSeries {
  static constexpr int kStatuses = 600;
  std::string socket;
  std::string operation;
  std::array<std::atomic<std::uint64_t>, kStatuses> by_status{};
  LatencyHistogram duration;

  void count(int status, std::chrono::nanoseconds elapsed) {
    by_status[static_cast<std::size_t>(status >= 0 && status < kStatuses ? status : 0)].fetch_add(
        1, std::memory_order_relaxed);
    duration.observe(elapsed);
  }
};

// One key's data-plane results (custody_key_operations_total) and denials (custody_denials_total).
struct KeySeries {
  static constexpr std::size_t kOperations = std::size(core::kAllOperations);
  static constexpr std::size_t kResults = 1 + static_cast<std::size_t>(core::Code::unavailable) + 1;  // ok, each code
  std::array<std::array<std::atomic<std::uint64_t>, kResults>, kOperations> operations{};
  std::array<std::atomic<std::uint64_t>, std::size(kDenialNames)> denials{};

  // error nullopt: the operation succeeded.
  void count_operation(core::Operation op, std::optional<core::Code> error) {
    const std::size_t result = error ? 1 + static_cast<std::size_t>(*error) : 0;
    operations[static_cast<std::size_t>(op)][result].fetch_add(1, std::memory_order_relaxed);
  }
  void count_denial(Denial reason) { denials[static_cast<std::size_t>(reason)].fetch_add(1, std::memory_order_relaxed); }
};

// The key label of a name the registry does not know: the name is the caller's choice and never
// becomes a label of its own.
inline constexpr std::string_view kUnknownKeyLabel = "_unknown";

class Metrics {
 public:
  // Distinct key labels; further keys count under key="_other".
  static constexpr std::size_t kMaxKeyLabels = 1000;

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

  // Registered when a socket's routes are set up, not per request; the same pair gives the same
  // series, which lives as long as the Metrics.
  RequestSeries& request_series(std::string_view socket, std::string_view operation);

  // A key's series if it has one (a shared lock: the request path's usual case).
  KeySeries* find_key(const std::string& key);
  // A key's series, made on first use; past kMaxKeyLabels keys, the shared "_other" one. key is
  // a name the registry knows, or kUnknownKeyLabel.
  KeySeries& key(const std::string& key);

  void count_admin_event(AdminEvent event) {
    admin_events_[static_cast<std::size_t>(event)].fetch_add(1, std::memory_order_relaxed);
  }
  std::uint64_t admin_events(AdminEvent event) const { return admin_events_[static_cast<std::size_t>(event)].load(); }
  // An admin change ran but its admin.execute record (or its finished state) could not be written.
  void count_unaudited_admin_change() { unaudited_admin_changes_.fetch_add(1, std::memory_order_relaxed); }
  std::uint64_t unaudited_admin_changes() const { return unaudited_admin_changes_.load(); }
  // When a recovery drill last passed (unix seconds; 0: never since start), for an alert on a
  // drill overdue.
  void recovery_drill_passed(std::int64_t at) { recovery_drill_last_success_.store(at, std::memory_order_relaxed); }
  std::int64_t recovery_drill_last_success() const { return recovery_drill_last_success_.load(); }

  // The families above that Metrics holds itself (requests, durations, keys, denials).
  void expose_requests(Exposition& out) const;
  void expose_keys(Exposition& out) const;

 private:

  std::array<std::atomic<std::uint64_t>, 6> responses_{};  // by status class 1xx..5xx
  std::atomic<std::int64_t> in_flight_{0};
  std::array<std::atomic<std::uint64_t>, std::size(kRefusalNames)> refusals_{};
  std::array<std::atomic<std::uint64_t>, std::size(kAdminEventNames)> admin_events_{};
  std::atomic<std::uint64_t> unaudited_admin_changes_{0};
  std::atomic<std::int64_t> recovery_drill_last_success_{0};

  mutable std::mutex requests_mutex_;     // registration and exposition only
  std::deque<RequestSeries> requests_;    // a deque: references stay valid as it grows

  mutable std::shared_mutex keys_mutex_;  // shared on the request path; exclusive for a new key
  std::unordered_map<std::string, std::unique_ptr<KeySeries>> keys_;
  KeySeries other_keys_;
};

}  // namespace custody::service
