// POST /v1/admin/requests {operation, params}. Until dual control lands, a request from a uid in
// admin.operator_uids runs at once and is answered in the §7 request shape with state "executed"
// (or "failed"). Operations: create-key {name, algorithm, policy}, rotate-key {name}.
#include <openssl/rand.h>

#include <algorithm>

#include "common/hex.h"
#include "daemon/core/clock.h"
#include "daemon/core/key_json.h"
#include "daemon/service/context.h"
#include "daemon/service/json_body.h"
#include "daemon/service/routes.h"

namespace custody::service {
namespace {

core::Outcome<std::shared_ptr<const core::Key>> execute(ServiceContext& c, const std::string& operation,
                                                        const boost::json::object& params) {
  Fields f(params, "params.");
  if (operation == "create-key") {
    if (auto ok = f.only({"name", "algorithm", "policy"}); !ok) return unexpected(ok.error());
    auto name = f.string("name");
    if (!name) return unexpected(name.error());
    auto alg_name = f.string("algorithm");
    if (!alg_name) return unexpected(alg_name.error());
    auto algorithm = core::parse_algorithm(*alg_name);
    if (!algorithm) return core::fail(core::Code::invalid_argument, "params.algorithm must be aes-256-gcm or hmac-sha256");
    const auto* pv = f.get("policy");
    auto policy = core::parse_policy(pv ? *pv : boost::json::value(boost::json::array()));
    if (!policy) return unexpected(policy.error());
    return c.key_admin.create_key(*name, *algorithm, std::move(*policy));
  }
  if (operation == "rotate-key") {
    if (auto ok = f.only({"name"}); !ok) return unexpected(ok.error());
    auto name = f.string("name");
    if (!name) return unexpected(name.error());
    return c.key_admin.rotate_key(*name);
  }
  return core::fail(core::Code::invalid_argument, "unknown operation '" + operation + "' (this build runs create-key and rotate-key)");
}

}  // namespace

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
    auto result = execute(c, *operation, params->as_object());
    if (!result) {
      // Bad input is refused as a client error; a failure while running is the request's outcome.
      if (result.error().code == core::Code::invalid_argument) return fail_with(result.error());
      e.result = core::code_name(result.error().code);
      request["state"] = "failed";
      request["error"] = {{"code", core::code_name(result.error().code)}, {"message", result.error().message}};
      return json_response(core::http_status(result.error().code), boost::json::object{{"request", std::move(request)}});
    }
    e.version = (*result)->current_version;
    request["state"] = "executed";
    request["result"] = {{"key", core::key_to_json(**result)}};
    return json_response(201, boost::json::object{{"request", std::move(request)}});
  };
}

}  // namespace custody::service
