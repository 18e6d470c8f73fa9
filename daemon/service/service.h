#pragma once
// The transport-free core of each socket: handle(request) → response, with the response held
// back until its audit records are written (CONTRACT §9). Fails closed: while the audit log
// cannot be written, every audited route answers 503 without running.
#include <chrono>
#include <functional>
#include <unordered_map>

#include "daemon/service/context.h"
#include "daemon/service/router.h"

namespace custody::service {

class Service {
 public:
  Service(Router router, ServiceContext& context);

  // May call done on another thread (the audit writer's).
  void handle(const Request& request, std::function<void(Response)> done);
  // A request the transport refused before it reached a route (body too large, malformed HTTP,
  // in-flight limit): answered with the error and audited like any other.
  void refuse(const Request& request, const core::Error& error, std::function<void(Response)> done);

 private:
  // Where a response is counted (custody_requests_total, custody_request_duration_seconds): the
  // status actually sent, once its audit records are written or have failed.
  struct Measure {
    RequestSeries* series;
    std::chrono::steady_clock::time_point start;
    void operator()(int status) const { series->count(status, std::chrono::steady_clock::now() - start); }
  };
  struct RouteSeries {
    RequestSeries* single = nullptr;
    RequestSeries* batch = nullptr;  // batchable routes only
  };
  void finish(Call& call, Response response, Measure measure, std::function<void(Response)> done);
  // Dual-control outcomes of an admin route, for custody_admin_requests_total and
  // custody_admin_changes_unaudited_total.
  void count_admin_outcome(const Route& route, const Call& call, int status);
  Router router_;
  ServiceContext& context_;
  std::unordered_map<const Route*, RouteSeries> series_;  // filled once, read without a lock
  RequestSeries* unmatched_;                              // no route for the path or method
  RequestSeries* refused_;                                // turned away by the transport
};

}  // namespace custody::service
