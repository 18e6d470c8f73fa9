#pragma once
// Stores one approval the way AdminRequests does, through StateStoreApi::approve_request, with the
// request's next state chosen by the test: refused (failed_precondition) once the request is no
// longer pending, so store tests exercise the one path the daemon uses.
#include <string>

#include "daemon/core/state/state_store_api.h"

namespace custody::test {

inline core::Outcome<void> store_approval(core::StateStoreApi& store, const std::string& request_id,
                                          const core::StoredApproval& approval, const std::string& next_state) {
  auto stored = store.approve_request(request_id, approval, [&](const core::StoredRequest& r) -> core::Outcome<std::string> {
    if (r.state != "pending") return core::fail(core::Code::failed_precondition, "request " + r.id + " is " + r.state);
    return next_state;
  });
  if (!stored) return custody::unexpected(stored.error());
  return {};
}

}  // namespace custody::test
