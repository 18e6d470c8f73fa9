#include "daemon/service/service.h"

#include <spdlog/spdlog.h>

namespace custody::service {
namespace {

// The path as an audit record names it: a request line can be as long as the header limit, and a
// refusal must not cost the log more than a short record.
constexpr std::size_t kAuditedPathBytes = 256;
std::string audited_path(const std::string& target) { return target.substr(0, kAuditedPathBytes); }

// Whether a data-plane call had the {"batch": [...]} form: its records then carry batch_index
// (an item that reached the token) or batch_items (the summary of refused items), see
// data_plane_handler.cpp. A batch body refused as a whole counts as the single form.
bool was_batch(const Call& call) {
  for (const auto& e : call.audit)
    if (e.extra.contains("batch_index") || e.extra.contains("batch_items")) return true;
  return false;
}

}  // namespace

Service::Service(Router router, ServiceContext& context) : router_(std::move(router)), context_(context) {
  // Every series this socket can count is registered now, so the request path only adds.
  auto& metrics = context_.metrics;
  for (const auto& route : router_.routes()) {
    RouteSeries s;
    s.single = &metrics.request_series(router_.socket(), route.operation);
    if (route.batchable) s.batch = &metrics.request_series(router_.socket(), route.operation + ".batch");
    series_[&route] = s;
  }
  unmatched_ = &metrics.request_series(router_.socket(), "unmatched");
  refused_ = &metrics.request_series(router_.socket(), "refused");
}

void Service::count_admin_outcome(const Route& route, const Call& call, int status) {
  auto& metrics = context_.metrics;
  if (route.operation == "admin.propose") {
    if (status == 201) metrics.count_admin_event(AdminEvent::proposed);
    return;
  }
  if (route.operation != "admin.approve" || !context_.requests || call.params.empty()) return;
  if (status != 200 && status != 503) return;
  auto r = context_.requests->get(call.params.front());
  if (!r) return;
  if (status == 200) {
    metrics.count_admin_event(AdminEvent::approved);
    if (r->state == "executed") metrics.count_admin_event(AdminEvent::executed);
    if (r->state == "failed") metrics.count_admin_event(AdminEvent::failed);
  } else if (r->state == "executing") {
    // The approval completed the quorum and the change ran, but its admin.execute record (or
    // its finished state) could not be written: the answer was 503 and the next start records
    // it. Until then this change has no audit record: "100 % admin audit coverage" is broken.
    metrics.count_unaudited_admin_change();
  }
}

void Service::handle(const Request& request, std::function<void(Response)> done) {
  Measure measure{unmatched_, std::chrono::steady_clock::now()};
  auto m = router_.match(request.method, request.target);
  if (m.route) measure.series = series_.at(m.route).single;
  const bool audited = !m.route || m.route->audited;
  if (audited && !context_.audit.accepting()) {
    auto response =
        error_response({core::Code::unavailable, "the audit log cannot be written; no operation runs"}, request.request_id);
    measure(response.status);
    done(std::move(response));
    return;
  }
  Call call{request, std::move(m.params), {}};
  Response response;
  if (!m.route) {
    const bool wrong_method = m.error == core::Code::method_not_allowed;
    core::Error e{m.error, wrong_method ? "method " + request.method + " is not allowed on " + request.target
                                        : "no such path: " + request.target};
    call.record("request").result = core::code_name(e.code);
    call.audit.back().extra["path"] = audited_path(request.target);
    response = error_response(e, request.request_id);
  } else {
    // Handlers report errors as values; an exception here is a bug (or memory exhaustion). It
    // must cost this request only, never the daemon: answer 500 and audit it.
    try {
      response = m.route->handler(call);
    } catch (const std::exception& e) {
      spdlog::error("{} {} failed with an exception: {}", request.method, request.target, e.what());
      // Records made before the exception stay: what they describe did happen.
      auto& rec = call.record("request");
      rec.result = core::code_name(core::Code::internal);
      rec.extra["path"] = audited_path(request.target);
      response = error_response({core::Code::internal, "internal error"}, request.request_id);
    }
    if (auto* batch = series_.at(m.route).batch; batch && was_batch(call)) measure.series = batch;
    count_admin_outcome(*m.route, call, response.status);
  }
  if (!audited) {
    measure(response.status);
    done(std::move(response));
    return;
  }
  finish(call, std::move(response), measure, std::move(done));
}

void Service::refuse(const Request& request, const core::Error& error, std::function<void(Response)> done) {
  Call call{request, {}, {}};
  auto& e = call.record("request");
  e.result = core::code_name(error.code);
  e.extra["path"] = audited_path(request.target);
  finish(call, error_response(error, request.request_id), Measure{refused_, std::chrono::steady_clock::now()},
         std::move(done));
}

void Service::finish(Call& call, Response response, Measure measure, std::function<void(Response)> done) {
  if (call.audit.empty()) {
    measure(response.status);
    done(std::move(response));
    return;
  }
  const std::string request_id = call.request.request_id;
  std::vector<core::AuditEvent> records(std::make_move_iterator(call.audit.begin()),
                                        std::make_move_iterator(call.audit.end()));
  // The response goes out only once its records are written; otherwise it is replaced.
  // Counted before it is sent, so a client that has its answer finds it in the next scrape.
  auto answer = [](std::function<void(Response)>& done, Response& response, const std::string& request_id,
                   const Measure& measure, bool written) {
    if (!written) response = error_response({core::Code::unavailable, "the audit log cannot be written"}, request_id);
    measure(response.status);
    done(std::move(response));
  };
  if (call.request.audit_on_this_thread) {
    if (auto written = context_.audit.write_now(records)) return answer(done, response, request_id, measure, *written);
  }
  context_.audit.submit(std::move(records), [answer, done = std::move(done), response = std::move(response),
                                                request_id, measure](bool written) mutable {
    answer(done, response, request_id, measure, written);
  });
}

}  // namespace custody::service
