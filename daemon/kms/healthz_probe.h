#pragma once
// Status's healthz (CONTRACT §10): "ok" only when a real wrap and unwrap with the bound key
// succeeded within the healthz interval. When the last success is older, the Status call that
// notices runs the probe (one at a time: concurrent Status calls share it), through the same
// DataPlane calls, policy and audit as Encrypt and Decrypt. A failed probe is remembered briefly,
// so that a burst of Status calls against a dead token costs one probe, not one each.
#include <chrono>
#include <mutex>
#include <optional>
#include <string>

#include "daemon/core/audit/audit_log.h"
#include "daemon/core/keys/data_plane.h"
#include "daemon/kms/token_runner.h"

namespace custody::kms {

class HealthzProbe {
 public:
  using Clock = std::chrono::steady_clock;
  HealthzProbe(core::DataPlane& data_plane, core::AuditLog& audit, TokenRunner& runner, std::string key,
               std::chrono::milliseconds interval)
      : data_plane_(data_plane), audit_(audit), runner_(runner), key_(std::move(key)), interval_(interval) {}

  // "ok", or what failed (safe to show: kube-apiserver puts it in its own healthz output).
  std::string healthz(const core::Peer& peer);

 private:
  // Wraps and unwraps a fixed message as peer; the error of the first step that failed.
  std::optional<core::Error> probe(const core::Peer& peer, core::AuditFacts& facts);

  core::DataPlane& data_plane_;
  core::AuditLog& audit_;
  TokenRunner& runner_;
  const std::string key_;
  const std::chrono::milliseconds interval_;
  std::mutex mutex_;  // held while probing
  std::optional<Clock::time_point> last_ok_;
  std::optional<Clock::time_point> last_failure_at_;
  std::string last_failure_;
};

}  // namespace custody::kms
