// POST /v1/admin/requests {operation, params}. Until dual control lands, a request from a uid in
// admin.operator_uids runs at once and is answered in the §7 request shape with state "executed"
// (or "failed"). The operations are in admin_operations.cpp.
#include <openssl/rand.h>

#include <algorithm>

#include "common/hex.h"
#include "daemon/core/clock.h"
#include "daemon/service/admin_operations.h"
#include "daemon/service/context.h"
#include "daemon/service/json_body.h"
#include "daemon/service/routes.h"

namespace custody::service {
Handler make_admin_request_handler(ServiceContext& c) {
  return [&c](Call& call) -> Response {
    const auto& rid = call.request.request_id;
    auto& e = call.record("admin.request");
    auto fail_with = [&](const core::Error& err) {
      e.result = core::code_name(err.code);
      return error_response(err, rid);
    };
    const auto& ops = c.operator_uids;
    if (std::find(ops.begin(), ops.end(), call.request.peer.uid) == ops.end())
      return fail_with({core::Code::permission_denied,
                        "uid " + std::to_string(call.request.peer.uid) + " is not an operator (admin.operator_uids)"});
    auto body = parse_body(call.request.body, c.max_json_depth);
    if (!body) return fail_with(body.error());
    Fields f(*body);
    if (auto ok = f.only({"operation", "params"}); !ok) return fail_with(ok.error());
    auto operation = f.string("operation");
    if (!operation) return fail_with(operation.error());
    e.operation = *operation;
    const auto* params = f.get("params");
    if (!params || !params->is_object()) return fail_with({core::Code::invalid_argument, "'params' must be an object"});
    if (const auto* n = params->as_object().if_contains("name"); n && n->is_string()) e.key = std::string(n->as_string());

    std::uint8_t raw[16];
    RAND_bytes(raw, sizeof raw);
    const auto now = core::rfc3339(std::chrono::system_clock::now());
    boost::json::object request{{"id", hex_lower(raw)}, {"operation", *operation}, {"params", *params},
                                {"created_at", now},    {"required", 0},          {"approvals", boost::json::array()}};
    auto result = run_admin_operation(c, *operation, params->as_object());
    if (!result) {
      // Bad input is refused as a client error; a failure while running is the request's outcome.
      if (result.error().code == core::Code::invalid_argument) return fail_with(result.error());
      e.result = core::code_name(result.error().code);
      request["state"] = "failed";
      request["error"] = {{"code", core::code_name(result.error().code)}, {"message", result.error().message}};
      return json_response(core::http_status(result.error().code), boost::json::object{{"request", std::move(request)}});
    }
    if (const auto* key = result->if_contains("key")) e.version = key->at("current_version").to_number<std::uint32_t>();
    request["state"] = "executed";
    request["result"] = std::move(*result);
    return json_response(201, boost::json::object{{"request", std::move(request)}});
  };
}

}  // namespace custody::service
