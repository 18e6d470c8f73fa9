#pragma once
// What health reports beyond liveness: the latest reconciliation of keys against the token.
// Written at start and by `keys check`, read by every health and metrics request.
#include <mutex>

#include "daemon/core/key_admin.h"

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
  // A key version whose token object is missing or altered makes the daemon degraded.
  bool degraded() const {
    std::lock_guard lock(mutex_);
    return !report_.missing.empty() || !report_.altered.empty();
  }

 private:
  mutable std::mutex mutex_;
  core::ReconcileReport report_;
};

}  // namespace custody::service
