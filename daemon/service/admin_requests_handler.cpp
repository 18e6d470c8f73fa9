// The dual-control admin API (CONTRACT §7): propose, list, show, approve, cancel. Every call is
// audited, refusals included. A good proposal, approval (and the operation it may run once the
// quorum is reached) or cancel is audited inside AdminRequests, before it is stored, as
// admin.propose, admin.approve (admin.execute) or admin.cancel; the handlers audit refusals.
#include "common/base64.h"
#include "daemon/core/admin/admin_requests.h"
#include "daemon/service/context.h"
#include "daemon/service/json_body.h"
#include "daemon/service/routes.h"

namespace custody::service {
namespace {

boost::json::object with_challenge(const core::StoredRequest& r) {
  return {{"request", core::request_to_json(r)}, {"challenge", base64_encode(to_bytes(r.challenge))}};
}

void name_key(core::AuditEvent& e, const boost::json::object& params) {
  if (const auto* n = params.if_contains("name"); n && n->is_string()) e.key = std::string(n->as_string());
  if (const auto* n = params.if_contains("key_name"); n && n->is_string()) e.key = std::string(n->as_string());
}

// A record of this call that is written only if the call is refused (refuse_with): a call that
// succeeds was audited by AdminRequests before its change was stored, and must not be twice.
struct RefusalRecord {
  Call& call;
  core::AuditEvent event;

  RefusalRecord(Call& c, std::string type) : call(c) {
    event.type = std::move(type);
    event.request_id = c.request.request_id;
    event.client = c.request.peer;
  }
  Response refuse_with(const core::Error& err) {
    call.audit.push_back(event);
    return refuse_recorded(call, call.audit.back(), err);
  }
};

core::AdminCaller caller_of(const Call& call) { return core::AdminCaller{call.request.request_id, call.request.peer}; }

}  // namespace

Handler make_propose_handler(ServiceContext& c) {
  return [&c](Call& call) -> Response {
    RefusalRecord refusal(call, "admin.propose");
    auto& e = refusal.event;
    auto body = parse_body(call.request.body, c.max_json_depth);
    if (!body) return refusal.refuse_with(body.error());
    Fields f(*body);
    if (auto ok = f.only({"operation", "params"}); !ok) return refusal.refuse_with(ok.error());
    auto operation = f.string("operation");
    if (!operation) return refusal.refuse_with(operation.error());
    e.operation = *operation;
    const auto* params = f.get("params");
    if (!params || !params->is_object())
      return refusal.refuse_with({core::Code::invalid_argument, "'params' must be an object"});
    name_key(e, params->as_object());
    auto r = c.requests->propose(*operation, params->as_object(), caller_of(call));
    if (!r) return refusal.refuse_with(r.error());
    return json_response(201, with_challenge(*r));
  };
}

Handler make_list_requests_handler(ServiceContext& c) {
  return [&c](Call& call) {
    call.record("admin.list-requests");
    boost::json::array all;
    for (const auto& r : c.requests->list()) all.push_back(with_challenge(r));
    return json_response(200, boost::json::object{{"requests", std::move(all)}});
  };
}

Handler make_show_request_handler(ServiceContext& c) {
  return [&c](Call& call) -> Response {
    auto& e = call.record("admin.show-request");
    e.extra["admin_request"] = call.params.at(0);
    auto r = c.requests->get(call.params.at(0));
    if (!r) return refuse_recorded(call, e, r.error());
    return json_response(200, with_challenge(*r));
  };
}

Handler make_approve_handler(ServiceContext& c) {
  return [&c](Call& call) -> Response {
    RefusalRecord refusal(call, "admin.approve");
    auto& e = refusal.event;
    const std::string id = call.params.at(0);
    e.extra["admin_request"] = id;
    auto body = parse_body(call.request.body, c.max_json_depth);
    if (!body) return refusal.refuse_with(body.error());
    Fields f(*body);
    if (auto ok = f.only({"operator", "signature"}); !ok) return refusal.refuse_with(ok.error());
    auto op = f.string("operator");
    if (!op) return refusal.refuse_with(op.error());
    e.operator_name = *op;
    auto signature = f.string("signature");
    if (!signature) return refusal.refuse_with(signature.error());
    if (auto before = c.requests->get(id)) {
      e.operation = before->operation;
      name_key(e, boost::json::parse(before->params).as_object());
    }
    auto r = c.requests->approve(id, *op, *signature, caller_of(call));
    if (!r) return refusal.refuse_with(r.error());
    return json_response(200, boost::json::object{{"request", core::request_to_json(*r)}});
  };
}

Handler make_cancel_handler(ServiceContext& c) {
  return [&c](Call& call) -> Response {
    RefusalRecord refusal(call, "admin.cancel");
    const std::string id = call.params.at(0);
    refusal.event.extra["admin_request"] = id;
    if (auto before = c.requests->get(id)) {
      refusal.event.operation = before->operation;
      name_key(refusal.event, boost::json::parse(before->params).as_object());
    }
    auto r = c.requests->cancel(id, caller_of(call));
    if (!r) return refusal.refuse_with(r.error());
    return json_response(200, boost::json::object{{"request", core::request_to_json(*r)}});
  };
}

}  // namespace custody::service
