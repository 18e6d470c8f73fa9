#pragma once
// Recovery on the admin socket (CONTRACT §11): the dual-control operations
// export-recovery-bundle and import-recovery-bundle, GET /v1/admin/recovery-bundles/{id}, the
// drill (POST /v1/admin/recovery-drills) and the state backup (POST /v1/admin/state-backup).
#include <boost/json/object.hpp>
#include <string>

#include "daemon/core/error.h"
#include "daemon/service/router.h"

namespace custody::service {

struct ServiceContext;

bool is_recovery_operation(const std::string& operation);
core::Outcome<void> validate_recovery_operation(ServiceContext& context, const std::string& operation,
                                                const boost::json::object& params);
core::Outcome<boost::json::object> run_recovery_operation(ServiceContext& context, const std::string& operation,
                                                          const boost::json::object& params, const std::string& request_id);

Handler make_show_recovery_bundle_handler(ServiceContext& context);
Handler make_recovery_drill_handler(ServiceContext& context);
Handler make_state_backup_handler(ServiceContext& context);

}  // namespace custody::service
