#pragma once
// The AWS KMS External Key Store proxy API (spec v1.0.3) over custody's core: the four POST routes
// under {uri_prefix}/kms/xks/v1, SigV4 authentication, errors as {errorName, errorMessage}, every
// call audited (kmsRequestId, principal, operation, key, result, time spent) before it is answered,
// and counted per route and errorName. The TCP listener (daemon/transport) hands requests to it.
#include <chrono>
#include <map>
#include <mutex>
#include <optional>

#include "daemon/core/audit/audit_log.h"
#include "daemon/core/keys/key_registry.h"
#include "daemon/core/keys/token_key_vault.h"
#include "daemon/service/health_state.h"
#include "daemon/service/metrics.h"
#include "daemon/transport/endpoint.h"
#include "daemon/xks/xks_error.h"
#include "daemon/xks/xks_settings.h"

namespace custody::xks {

class XksFrontEnd final : public transport::Endpoint {
 public:
  // The token vault itself, not the KeyVault interface: XKS takes the IV the token makes where it
  // insists (gcm_encrypt_fresh_iv), which the CONTRACT §4 blob format cannot.
  XksFrontEnd(XksSettings settings, const CredentialSet& credentials, core::KeyRegistry& registry, core::TokenKeyVault& vault,
              core::AuditLog& audit, service::Metrics& metrics, const service::HealthState* health);

  void handle(const service::Request& request, const transport::Origin& origin, Done done) override;
  void refuse(const service::Request& request, const transport::Origin& origin, const core::Error& error,
              Done done) override;
  service::Response connection_refused(const core::Error& error, const std::string& request_id) override;

  // The deep health check's verdict: ACTIVE, DEGRADED or UNAVAILABLE (cached for health_cache).
  std::string health_status();

 private:
  struct Reply;
  Reply route(const service::Request& request, const transport::Origin& origin);
  Reply metadata(const std::string& external_id, const boost::json::object& body, core::AuditEvent& event);
  Reply encrypt(const std::string& external_id, const boost::json::object& body, core::AuditEvent& event);
  Reply decrypt(const std::string& external_id, const boost::json::object& body, core::AuditEvent& event);
  Reply health(core::AuditEvent& event);
  std::string probe_health();
  void send(Reply reply, const service::Request& request, std::chrono::steady_clock::time_point start, Done done);
  service::RequestSeries& series(const std::string& route, const std::string& error_name);

  XksSettings settings_;
  const CredentialSet& credentials_;
  core::KeyRegistry& registry_;
  core::TokenKeyVault& vault_;
  core::AuditLog& audit_;
  service::Metrics& metrics_;
  const service::HealthState* health_;
  std::map<std::string, service::RequestSeries*> series_;  // "route" or "route:errorName"; filled once
  std::mutex health_mutex_;
  struct HealthVerdict {
    std::chrono::steady_clock::time_point at;
    std::string status;
    std::size_t fleet_size = 1;
  };
  std::optional<HealthVerdict> health_cache_;
  // The verdict, computed afresh when the cached one is older than health_cache.
  HealthVerdict health_verdict();
};

}  // namespace custody::xks
