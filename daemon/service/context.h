#pragma once
// What the handlers need, handed over by main. Handlers hold references, never own.
#include <sys/types.h>

#include <string>
#include <vector>

#include "daemon/core/admin/admin_requests.h"
#include "daemon/core/attestation/attestation.h"
#include "daemon/core/audit/audit_log.h"
#include "daemon/core/keys/data_plane.h"
#include "daemon/core/import/import_jobs.h"
#include "daemon/core/keys/key_admin.h"
#include "daemon/core/keys/key_registry.h"
#include "daemon/core/keys/key_vault.h"
#include "daemon/service/health_state.h"
#include "daemon/service/metrics.h"
#include "pkcs11/session_pool.h"

namespace custody::service {

struct TokenSummary {
  std::string label;
  std::string manufacturer;
  std::string model;
};

struct ServiceContext {
  core::KeyRegistry& registry;
  core::KeyVault& vault;
  core::DataPlane& data_plane;
  core::KeyAdmin& key_admin;
  core::AuditLog& audit;
  Metrics& metrics;
  TokenSummary token;
  unsigned max_json_depth = 16;
  core::AdminRequests* requests = nullptr;  // dual control, on the admin socket
  core::Attestor* attestor = nullptr;
  core::ImportJobs* jobs = nullptr;
  HealthState& health;
  core::UsageMeter* meter = nullptr;
  std::uint64_t default_usage_limit = core::kDefaultUsageLimit;
  // The token's session pool, for its metrics (sessions in use, resets, call latency) and for
  // health to bring back a pool waiting for a reset; may be null.
  p11::SessionPool* pool = nullptr;
};

}  // namespace custody::service
