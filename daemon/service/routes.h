#pragma once
// The route tables of the two sockets (CONTRACT §3 and §7).
#include "daemon/service/router.h"

namespace custody::service {

struct ServiceContext;

Router service_routes(ServiceContext& context);
Router admin_routes(ServiceContext& context);

Handler make_list_keys_handler(ServiceContext& context);
Handler make_show_key_handler(ServiceContext& context);
Handler make_health_handler(ServiceContext& context);
Handler make_metrics_handler(ServiceContext& context);
Handler make_admin_request_handler(ServiceContext& context);
Handler make_keys_check_handler(ServiceContext& context);

}  // namespace custody::service
