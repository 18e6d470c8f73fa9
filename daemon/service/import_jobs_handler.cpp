// BYOK on the admin socket: GET /v1/admin/import-jobs[/{id}] and
// POST /v1/admin/import-jobs/{id}/import {wrapped_key, kcv?} → {key, version, kcv}. Jobs are
// created by the dual-control operation create-import-job; importing into a job is audited.
#include "common/base64.h"
#include "daemon/service/context.h"
#include "daemon/service/json_body.h"
#include "daemon/service/routes.h"

namespace custody::service {

Handler make_list_jobs_handler(ServiceContext& c) {
  return [&c](Call& call) {
    call.record("admin.list-import-jobs");
    boost::json::array jobs;
    for (const auto& j : c.jobs->list()) jobs.push_back(core::job_to_json(j));
    boost::json::array methods;
    for (const auto& m : c.jobs->offered_methods()) methods.emplace_back(m);
    return json_response(200, boost::json::object{{"import_jobs", std::move(jobs)}, {"methods", std::move(methods)}});
  };
}

Handler make_show_job_handler(ServiceContext& c) {
  return [&c](Call& call) -> Response {
    auto& e = call.record("admin.show-import-job");
    e.extra["import_job"] = call.params.at(0);
    auto job = c.jobs->get(call.params.at(0));
    if (!job) {
      e.result = core::code_name(job.error().code);
      return error_response(job.error(), call.request.request_id);
    }
    return json_response(200, core::job_to_json(*job));
  };
}

Handler make_import_handler(ServiceContext& c) {
  return [&c](Call& call) -> Response {
    auto& e = call.record("admin.import");
    e.extra["import_job"] = call.params.at(0);
    auto fail_with = [&](const core::Error& err) {
      e.result = core::code_name(err.code);
      e.extra["message"] = err.message;
      return error_response(err, call.request.request_id);
    };
    if (auto job = c.jobs->get(call.params.at(0))) e.key = job->key_name;
    auto body = parse_body(call.request.body, c.max_json_depth);
    if (!body) return fail_with(body.error());
    Fields f(*body);
    if (auto ok = f.only({"wrapped_key", "kcv"}); !ok) return fail_with(ok.error());
    auto wrapped = f.base64("wrapped_key", 1, 4096);
    if (!wrapped) return fail_with(wrapped.error());
    std::optional<std::string> kcv;
    if (const auto* k = f.get("kcv"); k && !k->is_null()) {
      if (!k->is_string() || k->as_string().size() != 6)
        return fail_with({core::Code::invalid_argument, "'kcv' is 6 hex digits"});
      kcv = std::string(k->as_string());
      for (auto& ch : *kcv) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
    }
    auto result = c.jobs->import(call.params.at(0), *wrapped, kcv);
    if (!result) return fail_with(result.error());
    e.version = result->version;
    boost::json::object out{{"key", result->key->name}, {"version", result->version}};
    if (result->kcv) out["kcv"] = *result->kcv;
    else out["kcv"] = nullptr;
    return json_response(200, out);
  };
}

}  // namespace custody::service
