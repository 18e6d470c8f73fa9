#include "daemon/service/data_plane_handler.h"

namespace custody::service {
namespace {

core::Outcome<boost::json::object> run_item(const std::vector<std::string>& fields, const ItemHandler& item,
                                            const std::string& key_name, const boost::json::value& body,
                                            const core::Peer& peer, core::AuditFacts& facts) {
  facts.key = key_name;
  if (!body.is_object()) return core::fail(core::Code::invalid_argument, "each batch item must be an object");
  Fields f(body.as_object());
  for (const auto& [k, v] : body.as_object()) {
    bool known = false;
    for (const auto& a : fields) known = known || a == std::string_view(k);
    if (!known) return core::fail(core::Code::invalid_argument, "unknown field '" + std::string(k) + "'");
  }
  return item(key_name, f, peer, facts);
}

void audit_item(Call& call, core::Operation op, const core::AuditFacts& facts, const char* result) {
  auto& e = call.record(core::operation_name(op));
  e.result = result;
  e.key = facts.key;
  e.version = facts.version;
  e.context_sha256 = facts.context_sha256;
}

}  // namespace

Handler data_plane_handler(ServiceContext& context, core::Operation operation, std::vector<std::string> fields,
                           ItemHandler item) {
  return [&context, operation, fields = std::move(fields), item = std::move(item)](Call& call) -> Response {
    const std::string& key_name = call.params.at(0);
    const auto& rid = call.request.request_id;
    auto body = parse_body(call.request.body, context.max_json_depth);
    if (body && !core::valid_key_name(key_name))
      body = core::fail(core::Code::invalid_argument, "key names match ^[a-z0-9][a-z0-9._-]{0,62}$");
    if (!body) {
      audit_item(call, operation, core::AuditFacts{key_name, {}, {}}, core::code_name(body.error().code));
      return error_response(body.error(), rid);
    }
    const auto* batch = body->if_contains("batch");
    if (!batch) {
      core::AuditFacts facts;
      auto result = run_item(fields, item, key_name, *body, call.request.peer, facts);
      audit_item(call, operation, facts, result ? "ok" : core::code_name(result.error().code));
      if (!result) return error_response(result.error(), rid);
      return json_response(200, *result);
    }
    if (body->size() != 1 || !batch->is_array() || batch->as_array().empty() ||
        batch->as_array().size() > kMaxBatchItems) {
      core::Error e{core::Code::invalid_argument, "a batch body is {\"batch\": [item, ...]} with 1..256 items"};
      audit_item(call, operation, core::AuditFacts{key_name, {}, {}}, core::code_name(e.code));
      return error_response(e, rid);
    }
    boost::json::array results(zeroizing_storage());
    for (const auto& entry : batch->as_array()) {
      core::AuditFacts facts;
      auto result = run_item(fields, item, key_name, entry, call.request.peer, facts);
      audit_item(call, operation, facts, result ? "ok" : core::code_name(result.error().code));
      call.audit.back().extra["batch_index"] = results.size();
      if (result) {
        results.push_back(std::move(*result));
      } else {
        results.push_back(boost::json::object{
            {"error", {{"code", core::code_name(result.error().code)}, {"message", result.error().message}}}});
      }
    }
    boost::json::object out(zeroizing_storage());
    out["batch"] = std::move(results);
    return json_response(200, out);
  };
}

}  // namespace custody::service
