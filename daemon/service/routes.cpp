#include "daemon/service/routes.h"

#include "daemon/service/data_plane_handler.h"

namespace custody::service {

Router service_routes(ServiceContext& c) {
  Router r;
  r.add("POST", "/v1/keys/{name}/wrap", make_wrap_handler(c))
      .add("POST", "/v1/keys/{name}/unwrap", make_unwrap_handler(c))
      .add("POST", "/v1/keys/{name}/datakey", make_datakey_handler(c))
      .add("POST", "/v1/keys/{name}/rewrap", make_rewrap_handler(c))
      .add("POST", "/v1/keys/{name}/derive", make_derive_handler(c))
      .add("GET", "/v1/keys", make_list_keys_handler(c, false))
      .add("GET", "/v1/keys/{name}", make_show_key_handler(c, false))
      .add("POST", "/v1/attestation", make_attestation_handler(c, false))
      .add("GET", "/v1/health", make_health_handler(c, false), false)
      .add("GET", "/metrics", make_metrics_handler(c), false);
  return r;
}

Router admin_routes(ServiceContext& c) {
  Router r;
  r.add("POST", "/v1/admin/requests", make_propose_handler(c))
      .add("GET", "/v1/admin/requests", make_list_requests_handler(c))
      .add("GET", "/v1/admin/requests/{id}", make_show_request_handler(c))
      .add("POST", "/v1/admin/requests/{id}/approvals", make_approve_handler(c))
      .add("POST", "/v1/admin/requests/{id}/cancel", make_cancel_handler(c))
      .add("POST", "/v1/admin/keys/check", make_keys_check_handler(c))
      .add("GET", "/v1/admin/import-jobs", make_list_jobs_handler(c))
      .add("GET", "/v1/admin/import-jobs/{id}", make_show_job_handler(c))
      .add("POST", "/v1/admin/import-jobs/{id}/import", make_import_handler(c))
      .add("GET", "/v1/keys", make_list_keys_handler(c, true))
      .add("GET", "/v1/keys/{name}", make_show_key_handler(c, true))
      .add("POST", "/v1/attestation", make_attestation_handler(c, true))
      .add("GET", "/v1/health", make_health_handler(c, true), false)
      .add("GET", "/metrics", make_metrics_handler(c), false);
  return r;
}

}  // namespace custody::service
