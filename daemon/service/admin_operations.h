#pragma once
// The state-changing admin operations of CONTRACT §7, by name, with their params checked.
// Dual control (core::AdminRequests) runs them once a request has its approvals.
#include <boost/json/object.hpp>
#include <string>

#include "daemon/core/error.h"
#include "daemon/core/keys/key_admin.h"

namespace custody::service {

struct ServiceContext;

// Checks operation and params without changing anything, when a request is proposed: the
// params' shape, and that the operation could run on the keys as they are now (the key exists
// or not as the operation needs, its state allows the change, wait_seconds is at least the
// configured minimum, versions are in range, an import job's transport key is usable).
core::Outcome<void> validate_admin_operation(ServiceContext& context, const core::LifecycleSettings& lifecycle,
                                             const std::string& operation, const boost::json::object& params);
// Runs it for the admin request request_id; the value is the request's "result".
core::Outcome<boost::json::object> run_admin_operation(ServiceContext& context, const std::string& operation,
                                                       const boost::json::object& params, const std::string& request_id);
// The result of an operation that has already been applied: the key as it is now.
boost::json::object admin_operation_result(ServiceContext& context, const std::string& operation,
                                           const boost::json::object& params);

}  // namespace custody::service
