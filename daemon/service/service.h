#pragma once
// The transport-free core of each socket: handle(request) → response, with the response held
// back until its audit records are written (CONTRACT §9). Fails closed: while the audit log
// cannot be written, every audited route answers 503 without running.
#include <functional>

#include "daemon/service/context.h"
#include "daemon/service/router.h"

namespace custody::service {

class Service {
 public:
  Service(Router router, ServiceContext& context) : router_(std::move(router)), context_(context) {}

  // May call done on another thread (the audit writer's).
  void handle(const Request& request, std::function<void(Response)> done);
  // A request the transport refused before it reached a route (body too large, malformed HTTP,
  // in-flight limit): answered with the error and audited like any other.
  void refuse(const Request& request, const core::Error& error, std::function<void(Response)> done);

 private:
  void finish(Call& call, Response response, std::function<void(Response)> done);
  Router router_;
  ServiceContext& context_;
};

}  // namespace custody::service
