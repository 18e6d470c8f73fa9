// POST /v1/admin/keys/check: reconcile every key version with its token object now, update
// health, and report what is missing, altered or stray. Changes nothing in the token or state.
#include "daemon/service/context.h"
#include "daemon/service/routes.h"

namespace custody::service {

Handler make_keys_check_handler(ServiceContext& c) {
  return [&c](Call& call) -> Response {
    auto& e = call.record("admin.keys-check");
    auto report = c.key_admin.reconcile();
    if (!report) {
      e.result = core::code_name(report.error().code);
      return error_response(report.error(), call.request.request_id);
    }
    c.health.set_reconcile(*report);
    auto list = [](const std::vector<std::string>& items) {
      boost::json::array a;
      for (const auto& i : items) a.emplace_back(i);
      return a;
    };
    e.extra["missing"] = report->missing.size();
    e.extra["altered"] = report->altered.size();
    e.extra["strays"] = report->strays.size();
    return json_response(200, boost::json::object{{"clean", report->clean()},
                                                  {"missing", list(report->missing)},
                                                  {"altered", list(report->altered)},
                                                  {"strays", list(report->strays)}});
  };
}

}  // namespace custody::service
