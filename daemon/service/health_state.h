#pragma once
// What health reports beyond liveness: the latest reconciliation of keys against the token
// (written at start and by `keys check`, read by every health and metrics request), and whether
// the state store's latest call failed.
#include <chrono>
#include <functional>
#include <mutex>
#include <optional>
#include <string>

#include "daemon/core/keys/key_admin.h"

namespace custody::service {

class HealthState {
 public:
  void set_reconcile(core::ReconcileReport report) {
    std::lock_guard lock(mutex_);
    report_ = std::move(report);
  }
  core::ReconcileReport reconcile() const {
    std::lock_guard lock(mutex_);
    return report_;
  }
  // A key version whose token object is missing or altered, or a destroyed one whose object is
  // still there, makes the daemon degraded.
  bool degraded() const {
    std::lock_guard lock(mutex_);
    return !report_.missing.empty() || !report_.altered.empty() || !report_.undestroyed.empty();
  }

  void watch_store(const core::StateStoreApi* store) { store_ = store; }
  const core::StateStoreApi* store() const { return store_; }
  // The store's error when its latest call failed: requests that need it fail meanwhile.
  std::optional<std::string> store_failing() const { return store_ ? store_->failing() : std::nullopt; }

  // A fleet member (state.backend postgresql): how its view of the shared state stands.
  struct FleetSync {
    std::optional<std::string> failing;          // the sync's latest error
    std::chrono::milliseconds unsynced_for{0};   // since the view was last known current (0 while in sync)
    std::chrono::milliseconds max_staleness{0};  // state.max_staleness
    // Served past its bound: the data plane answers 503 until a resync succeeds.
    bool stale() const { return unsynced_for > max_staleness || (failing && max_staleness.count() == 0); }
  };
  // Set once, before serving.
  void watch_fleet(std::function<FleetSync()> status) { fleet_ = std::move(status); }
  std::optional<FleetSync> fleet() const { return fleet_ ? std::optional(fleet_()) : std::nullopt; }
  // Why the data plane must not serve from its view of the shared state now, if it must not.
  std::optional<std::string> stale() const {
    if (!fleet_) return std::nullopt;
    const auto f = fleet_();
    if (!f.stale()) return std::nullopt;
    if (f.max_staleness.count() == 0)
      return std::string("the shared state cannot be synchronised now, and state.max_staleness is 0: nothing is served from "
                         "an unconfirmed view");
    return "the shared state has not been synchronised for " + std::to_string(f.unsynced_for.count()) +
           " ms, longer than state.max_staleness (" + std::to_string(f.max_staleness.count()) + " ms)";
  }

 private:
  mutable std::mutex mutex_;
  core::ReconcileReport report_;
  const core::StateStoreApi* store_ = nullptr;
  std::function<FleetSync()> fleet_;
};

}  // namespace custody::service
