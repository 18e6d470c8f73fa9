#include "daemon/service/service.h"

namespace custody::service {

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
    call.audit.back().extra["path"] = request.target;
    response = error_response(e, request.request_id);
  } else {
    response = m.route->handler(call);
  }
  if (!audited || call.audit.empty()) {
    done(std::move(response));
    return;
  }
  const std::string request_id = request.request_id;
  context_.audit.submit(std::move(call.audit), [done = std::move(done), response = std::move(response),
                                                request_id](bool written) mutable {
    if (written) done(std::move(response));
    else done(error_response({core::Code::unavailable, "the audit log cannot be written"}, request_id));
  });
}

}  // namespace custody::service
