#include "daemon/service/recovery_handler.h"

#include "daemon/core/recovery/recovery.h"
#include "daemon/service/context.h"
#include "daemon/service/json_body.h"

namespace custody::service {
namespace {

core::Outcome<core::Recovery*> recovery_of(ServiceContext& c) {
  core::Recovery* r = c.attestor ? c.attestor->recovery() : nullptr;
  if (!r) return core::fail(core::Code::unavailable, "recovery is not set up in this daemon");
  return r;
}

}  // namespace

bool is_recovery_operation(const std::string& op) {
  return op == "export-recovery-bundle" || op == "import-recovery-bundle";
}

core::Outcome<void> validate_recovery_operation(ServiceContext& c, const std::string& op, const boost::json::object& params) {
  auto r = recovery_of(c);
  if (!r) return unexpected(r.error());
  if (op == "export-recovery-bundle") {
    auto ok = (*r)->check_export(params);
    if (!ok) return unexpected(ok.error());
    return {};
  }
  auto ok = (*r)->check_import(params);
  if (!ok) return unexpected(ok.error());
  return {};
}

core::Outcome<boost::json::object> run_recovery_operation(ServiceContext& c, const std::string& op,
                                                          const boost::json::object& params, const std::string& request_id) {
  auto r = recovery_of(c);
  if (!r) return unexpected(r.error());
  if (op == "export-recovery-bundle") {
    auto request = (*r)->check_export(params);
    if (!request) return unexpected(request.error());
    return (*r)->export_bundle(*request, request_id);
  }
  auto request = (*r)->check_import(params);
  if (!request) return unexpected(request.error());
  return (*r)->import_bundle(*request);
}

Handler make_show_recovery_bundle_handler(ServiceContext& c) {
  return [&c](Call& call) -> Response {
    auto& e = call.record("admin.show-recovery-bundle");
    e.extra["recovery_bundle"] = call.params.at(0);
    auto r = recovery_of(c);
    if (!r) return refuse_recorded(call, e, r.error());
    auto envelope = (*r)->bundle(call.params.at(0));
    if (!envelope) return refuse_recorded(call, e, envelope.error());
    return json_response(200, *envelope);
  };
}

Handler make_recovery_drill_handler(ServiceContext& c) {
  return [&c](Call& call) -> Response {
    auto& e = call.record("admin.recovery-drill");
    auto r = recovery_of(c);
    if (!r) return refuse_recorded(call, e, r.error());
    auto body = parse_body(call.request.body, c.max_json_depth);
    if (!body) return refuse_recorded(call, e, body.error());
    auto request = (*r)->check_import(*body);
    if (!request) return refuse_recorded(call, e, request.error());
    e.extra["recovery_bundle"] = request->bundle.id;
    auto report = (*r)->drill(*request);
    if (!report) return refuse_recorded(call, e, report.error());
    const bool passed = report->at("passed").as_bool();
    e.extra["passed"] = passed;
    if (passed) c.metrics.recovery_drill_passed(core::unix_seconds(std::chrono::system_clock::now()));
    return json_response(200, *report);
  };
}

Handler make_state_backup_handler(ServiceContext& c) {
  return [&c](Call& call) -> Response {
    auto& e = call.record("admin.state-backup");
    auto r = recovery_of(c);
    if (!r) return refuse_recorded(call, e, r.error());
    auto snapshot = (*r)->state_snapshot();
    if (!snapshot) return refuse_recorded(call, e, snapshot.error());
    Response response;
    response.status = 200;
    response.content_type = "application/vnd.sqlite3";
    response.body = WipingString(std::string(snapshot->begin(), snapshot->end()));
    return response;
  };
}

}  // namespace custody::service
