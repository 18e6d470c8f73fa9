#include "daemon/service/routes.h"

#include "daemon/service/data_plane_handler.h"
#include "daemon/service/recovery_handler.h"

namespace custody::service {

Router service_routes(ServiceContext& c) {
  Router r("service");
  r.add("POST", "/v1/keys/{name}/wrap", make_wrap_handler(c)).as("wrap", true)
      .add("POST", "/v1/keys/{name}/unwrap", make_unwrap_handler(c)).as("unwrap", true)
      .add("POST", "/v1/keys/{name}/datakey", make_datakey_handler(c)).as("datakey", true)
      .add("POST", "/v1/keys/{name}/rewrap", make_rewrap_handler(c)).as("rewrap", true)
      .add("POST", "/v1/keys/{name}/derive", make_derive_handler(c)).as("derive", true)
      .add("GET", "/v1/keys", make_list_keys_handler(c, false)).as("keys.list")
      .add("GET", "/v1/keys/{name}", make_show_key_handler(c, false)).as("keys.show")
      .add("POST", "/v1/attestation", make_attestation_handler(c, false)).as("attestation")
      .add("GET", "/v1/health", make_health_handler(c, false), false).as("health")
      .add("GET", "/metrics", make_metrics_handler(c), false).as("metrics");
  return r;
}

Router admin_routes(ServiceContext& c) {
  Router r("admin");
  r.add("POST", "/v1/admin/requests", make_propose_handler(c)).as("admin.propose")
      .add("GET", "/v1/admin/requests", make_list_requests_handler(c)).as("admin.list-requests")
      .add("GET", "/v1/admin/requests/{id}", make_show_request_handler(c)).as("admin.show-request")
      .add("POST", "/v1/admin/requests/{id}/approvals", make_approve_handler(c)).as("admin.approve")
      .add("POST", "/v1/admin/requests/{id}/cancel", make_cancel_handler(c)).as("admin.cancel")
      .add("POST", "/v1/admin/keys/check", make_keys_check_handler(c)).as("admin.keys-check")
      .add("GET", "/v1/admin/import-jobs", make_list_jobs_handler(c)).as("admin.list-import-jobs")
      .add("GET", "/v1/admin/import-jobs/{id}", make_show_job_handler(c)).as("admin.show-import-job")
      .add("POST", "/v1/admin/import-jobs/{id}/import", make_import_handler(c)).as("admin.import")
      .add("GET", "/v1/admin/recovery-bundles/{id}", make_show_recovery_bundle_handler(c)).as("admin.show-recovery-bundle")
      .add("POST", "/v1/admin/recovery-drills", make_recovery_drill_handler(c)).as("admin.recovery-drill")
      .add("POST", "/v1/admin/state-backup", make_state_backup_handler(c)).as("admin.state-backup")
      .add("GET", "/v1/keys", make_list_keys_handler(c, true)).as("keys.list")
      .add("GET", "/v1/keys/{name}", make_show_key_handler(c, true)).as("keys.show")
      .add("POST", "/v1/attestation", make_attestation_handler(c, true)).as("attestation")
      .add("GET", "/v1/health", make_health_handler(c, true), false).as("health")
      .add("GET", "/metrics", make_metrics_handler(c), false).as("metrics");
  return r;
}

}  // namespace custody::service
