#pragma once
// One request being handled: its input, the path parameters, and the audit records the handler
// wants written before the response goes out.
#include <deque>
#include <string>
#include <vector>

#include "daemon/core/audit/audit_event.h"
#include "daemon/core/error.h"
#include "daemon/service/request.h"

namespace custody::service {

struct Call {
  const Request& request;
  std::vector<std::string> params;  // values of {name} segments in the route pattern
  // A deque: handlers keep references from record() while adding more records.
  std::deque<core::AuditEvent> audit;

  // A new audit record for this request, pre-filled with request id and client. The reference
  // stays valid for the whole call.
  core::AuditEvent& record(std::string type) {
    auto& e = audit.emplace_back();
    e.type = std::move(type);
    e.request_id = request.request_id;
    e.client = request.peer;
    return e;
  }
};

// The body serialized into memory that is wiped when freed (it may carry plaintext or keys).
Response json_response(int status, const boost::json::value& body);
Response json_response(int status, const boost::json::object& body);  // no copy into a value
Response error_response(const core::Error& error, const std::string& request_id);
// The error response for a refused call, with the refusal written into its audit record e.
Response refuse_recorded(Call& call, core::AuditEvent& e, const core::Error& error);

}  // namespace custody::service
