#pragma once
// The state-changing admin operations of CONTRACT §7, by name, with their params checked.
// Today the admin request handler runs them at once for configured operator uids; dual control
// will run the same functions once a request has its approvals.
#include <boost/json/object.hpp>
#include <string>

#include "daemon/core/error.h"

namespace custody::service {

struct ServiceContext;

// Checks operation and params without changing anything.
core::Outcome<void> validate_admin_operation(const std::string& operation, const boost::json::object& params);
// Runs it; the value is the request's "result".
core::Outcome<boost::json::object> run_admin_operation(ServiceContext& context, const std::string& operation,
                                                       const boost::json::object& params);

}  // namespace custody::service
