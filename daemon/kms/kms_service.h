#pragma once
// The KeyManagementService handlers (CONTRACT §10), bound to one aes-256-gcm key: each call is
// mapped onto the DataPlane calls the service socket makes (wrap, unwrap; policy by the peer's
// SO_PEERCRED), run on the worker pool (TokenRunner) and audited before it is answered, with the
// request's uid as the record's request_id. gRPC's own threads only wait.
#include <string>

#include "api.grpc.pb.h"
#include "daemon/core/audit/audit_log.h"
#include "daemon/core/keys/data_plane.h"
#include "daemon/core/keys/key_registry.h"
#include "daemon/kms/healthz_probe.h"
#include "daemon/kms/kms_peers.h"
#include "daemon/kms/token_runner.h"
#include "daemon/service/metrics.h"

namespace custody::kms {

struct KmsParts {
  core::KeyRegistry& registry;
  core::DataPlane& data_plane;
  core::AuditLog& audit;
  KmsPeers& peers;
  TokenRunner& runner;
  HealthzProbe& probe;
  std::string key;
  service::Metrics& metrics;
};

class KmsService final : public v2::KeyManagementService::Service {
 public:
  explicit KmsService(KmsParts parts);

  grpc::Status Status(grpc::ServerContext* context, const v2::StatusRequest* request,
                      v2::StatusResponse* response) override;
  grpc::Status Encrypt(grpc::ServerContext* context, const v2::EncryptRequest* request,
                       v2::EncryptResponse* response) override;
  grpc::Status Decrypt(grpc::ServerContext* context, const v2::DecryptRequest* request,
                       v2::DecryptResponse* response) override;

 private:
  // The caller's credentials, or the status that refuses the call.
  core::Outcome<core::Peer> caller(grpc::ServerContext& context) const;
  // "<name>/v<current_version>", or empty when the key is gone.
  std::string current_key_id() const;
  // Writes the call's audit record; false (answer UNAVAILABLE) when it could not be written.
  bool audit(const char* type, const std::string& uid, const core::Peer& peer, const core::AuditFacts& facts,
             const char* result);

  // custody_requests_total / custody_request_duration_seconds{socket="kms"} for one call, with
  // the HTTP status the service socket gives the same result; and custody_key_operations_total.
  void count(service::RequestSeries& series, std::chrono::steady_clock::time_point start, const core::Error* error);
  void count_key_operation(core::Operation op, const core::AuditFacts& facts, const core::Error* error);

  KmsParts parts_;
  service::RequestSeries& status_series_;
  service::RequestSeries& encrypt_series_;
  service::RequestSeries& decrypt_series_;
};

}  // namespace custody::kms
