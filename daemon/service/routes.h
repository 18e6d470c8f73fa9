#pragma once
// The route tables of the two sockets (CONTRACT §3 and §7).
#include "daemon/service/router.h"

namespace custody::service {

struct ServiceContext;

Router service_routes(ServiceContext& context);
Router admin_routes(ServiceContext& context);

// every_key: the admin socket shows operators every key, the service socket only the caller's.
Handler make_list_keys_handler(ServiceContext& context, bool every_key);
Handler make_show_key_handler(ServiceContext& context, bool every_key);
// admin: names the objects a key check found wrong and counts the keys; the service socket does not.
Handler make_health_handler(ServiceContext& context, bool admin);
Handler make_attestation_handler(ServiceContext& context, bool every_key);
Handler make_metrics_handler(ServiceContext& context);
Handler make_propose_handler(ServiceContext& context);
Handler make_list_requests_handler(ServiceContext& context);
Handler make_show_request_handler(ServiceContext& context);
Handler make_approve_handler(ServiceContext& context);
Handler make_cancel_handler(ServiceContext& context);
Handler make_list_jobs_handler(ServiceContext& context);
Handler make_show_job_handler(ServiceContext& context);
Handler make_import_handler(ServiceContext& context);
Handler make_keys_check_handler(ServiceContext& context);

}  // namespace custody::service
