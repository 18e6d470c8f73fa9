#include "daemon/service/service.h"

#include <spdlog/spdlog.h>

namespace custody::service {
namespace {

// The path as an audit record names it: a request line can be as long as the header limit, and a
// refusal must not cost the log more than a short record.
constexpr std::size_t kAuditedPathBytes = 256;
std::string audited_path(const std::string& target) { return target.substr(0, kAuditedPathBytes); }

}  // namespace

void Service::handle(const Request& request, std::function<void(Response)> done) {
  auto m = router_.match(request.method, request.target);
  const bool audited = !m.route || m.route->audited;
  if (audited && !context_.audit.accepting()) {
    done(error_response({core::Code::unavailable, "the audit log cannot be written; no operation runs"}, request.request_id));
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
  }
  if (!audited) {
    done(std::move(response));
    return;
  }
  finish(call, std::move(response), std::move(done));
}

void Service::refuse(const Request& request, const core::Error& error, std::function<void(Response)> done) {
  Call call{request, {}, {}};
  auto& e = call.record("request");
  e.result = core::code_name(error.code);
  e.extra["path"] = audited_path(request.target);
  finish(call, error_response(error, request.request_id), std::move(done));
}

void Service::finish(Call& call, Response response, std::function<void(Response)> done) {
  if (call.audit.empty()) {
    done(std::move(response));
    return;
  }
  const std::string request_id = call.request.request_id;
  std::vector<core::AuditEvent> records(std::make_move_iterator(call.audit.begin()),
                                        std::make_move_iterator(call.audit.end()));
  // The response goes out only once its records are written; otherwise it is replaced.
  auto answer = [](std::function<void(Response)>& done, Response& response, const std::string& request_id, bool written) {
    if (written) done(std::move(response));
    else done(error_response({core::Code::unavailable, "the audit log cannot be written"}, request_id));
  };
  if (call.request.audit_on_this_thread) {
    if (auto written = context_.audit.write_now(records)) return answer(done, response, request_id, *written);
  }
  context_.audit.submit(std::move(records), [answer, done = std::move(done), response = std::move(response),
                                                request_id](bool written) mutable {
    answer(done, response, request_id, written);
  });
}

}  // namespace custody::service
