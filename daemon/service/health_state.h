#pragma once
// What health reports beyond liveness: the latest reconciliation of keys against the token
// (written at start and by `keys check`, read by every health and metrics request), and whether
// the state store's latest call failed.
#include <mutex>

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

 private:
  mutable std::mutex mutex_;
  core::ReconcileReport report_;
  const core::StateStoreApi* store_ = nullptr;
};

}  // namespace custody::service
