// The dual-control admin API (CONTRACT §7): propose, list, show, approve, cancel. Every call is
// audited, refusals included; a good approval and the operation it may run (once the quorum is
// reached) are audited inside AdminRequests::approve as admin.approve and admin.execute.
#include "common/base64.h"
#include "daemon/core/admin_requests.h"
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

Response refuse(Call& call, core::AuditEvent& e, const core::Error& err) {
  e.result = core::code_name(err.code);
  e.extra["message"] = err.message;
  return error_response(err, call.request.request_id);
}

}  // namespace

Handler make_propose_handler(ServiceContext& c) {
  return [&c](Call& call) -> Response {
    auto& e = call.record("admin.propose");
    auto body = parse_body(call.request.body, c.max_json_depth);
    if (!body) return refuse(call, e, body.error());
    Fields f(*body);
    if (auto ok = f.only({"operation", "params"}); !ok) return refuse(call, e, ok.error());
    auto operation = f.string("operation");
    if (!operation) return refuse(call, e, operation.error());
    e.operation = *operation;
    const auto* params = f.get("params");
    if (!params || !params->is_object()) return refuse(call, e, {core::Code::invalid_argument, "'params' must be an object"});
    name_key(e, params->as_object());
    auto r = c.requests->propose(*operation, params->as_object(), call.request.peer.uid);
    if (!r) return refuse(call, e, r.error());
    e.extra["admin_request"] = r->id;
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
    if (!r) return refuse(call, e, r.error());
    return json_response(200, with_challenge(*r));
  };
}

Handler make_approve_handler(ServiceContext& c) {
  return [&c](Call& call) -> Response {
    // A good approval (and the execution it may complete) is audited by AdminRequests itself,
    // before it is stored; this record is for refusals only.
    core::AuditEvent e;
    e.type = "admin.approve";
    e.request_id = call.request.request_id;
    e.client = call.request.peer;
    const std::string id = call.params.at(0);
    e.extra["admin_request"] = id;
    auto refuse_approval = [&call, &e](const core::Error& err) {
      call.audit.push_back(e);
      return refuse(call, call.audit.back(), err);
    };
    auto body = parse_body(call.request.body, c.max_json_depth);
    if (!body) return refuse_approval(body.error());
    Fields f(*body);
    if (auto ok = f.only({"operator", "signature"}); !ok) return refuse_approval(ok.error());
    auto op = f.string("operator");
    if (!op) return refuse_approval(op.error());
    e.operator_name = *op;
    auto signature = f.string("signature");
    if (!signature) return refuse_approval(signature.error());
    if (auto before = c.requests->get(id)) {
      e.operation = before->operation;
      name_key(e, boost::json::parse(before->params).as_object());
    }
    auto r = c.requests->approve(id, *op, *signature, core::AdminCaller{call.request.request_id, call.request.peer});
    if (!r) return refuse_approval(r.error());
    return json_response(200, boost::json::object{{"request", core::request_to_json(*r)}});
  };
}

Handler make_cancel_handler(ServiceContext& c) {
  return [&c](Call& call) -> Response {
    auto& e = call.record("admin.cancel");
    e.extra["admin_request"] = call.params.at(0);
    auto r = c.requests->cancel(call.params.at(0));
    if (!r) return refuse(call, e, r.error());
    e.operation = r->operation;
    return json_response(200, boost::json::object{{"request", core::request_to_json(*r)}});
  };
}

}  // namespace custody::service
