#pragma once
// Attestation reports (CONTRACT §6): a JSON document describing the daemon, the token, the
// operators and quorum, the audit head and every key with its token objects' attributes read
// live with C_GetAttributeValue, signed in the token by the attestation key.
#include <boost/json/object.hpp>
#include <memory>
#include <string>
#include <vector>

#include "daemon/core/admin/admin_requests.h"
#include "daemon/core/attestation/attestation_key.h"
#include "daemon/core/audit/audit_log.h"
#include "daemon/core/import/import_jobs.h"
#include "daemon/core/keys/key_vault.h"

namespace custody::core {
class Recovery;
}

namespace custody::core {

struct AttestedToken {
  std::string label, manufacturer, model, serial, hardware_version, firmware_version;
  std::string library_path, library_manufacturer, library_description, library_version;
};

struct AttestedDaemon {
  std::string version, instance_id, config_sha256;
};

class Attestor {
 public:
  Attestor(const AttestationKey& key, KeyVault& vault, AuditLog& audit, AdminRequests& requests, AttestedToken token,
           AttestedDaemon daemon, const Clock& clock)
      : key_(key), vault_(vault), audit_(audit), requests_(requests), token_(std::move(token)),
        daemon_(std::move(daemon)), clock_(clock) {}

  // The envelope: report (base64 of the exact signed bytes), signature, public_key, key_id.
  void set_import_jobs(ImportJobs* jobs) { jobs_ = jobs; }
  // With recovery, the report lists the token's trusted wrapping keys: where keys can go.
  void set_recovery(Recovery* recovery) { recovery_ = recovery; }
  Recovery* recovery() const { return recovery_; }
  // A fleet member (state backend postgresql): the report names this host's id and lists every
  // fleet instance's attestation key found in the shared token. One host's report is unchanged.
  void set_fleet(p11::SessionPool* pool, std::string host_id) {
    fleet_pool_ = pool;
    host_id_ = std::move(host_id);
  }

  Outcome<boost::json::object> attest(std::span<const std::uint8_t> nonce,
                                      const std::vector<std::shared_ptr<const Key>>& keys);

 private:
  const AttestationKey& key_;
  KeyVault& vault_;
  AuditLog& audit_;
  AdminRequests& requests_;
  AttestedToken token_;
  AttestedDaemon daemon_;
  const Clock& clock_;
  ImportJobs* jobs_ = nullptr;
  Recovery* recovery_ = nullptr;
  p11::SessionPool* fleet_pool_ = nullptr;
  std::string host_id_;
};

}  // namespace custody::core
