#pragma once
// A table of routes: method + pattern ("/v1/keys/{name}/wrap") → handler.
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "daemon/service/call.h"

namespace custody::service {

using Handler = std::function<Response(Call&)>;

struct Route {
  std::string method;
  std::vector<std::string> segments;  // "{}" marks a parameter
  Handler handler;
  bool audited = true;  // health and metrics are not audited
  // What /metrics counts its requests under (custody_requests_total{operation}): a name from this
  // table, never the raw path, so the label set stays bounded. Batchable routes also count their
  // {"batch": [...]} form as "<operation>.batch".
  std::string operation;
  bool batchable = false;
};

class Router {
 public:
  // socket: "service" or "admin", the socket label of this table's metrics.
  explicit Router(std::string socket = "service") : socket_(std::move(socket)) {}
  Router& add(std::string method, std::string_view pattern, Handler handler, bool audited = true);
  // Names the route added last (Route::operation); unnamed routes count under their pattern.
  Router& as(std::string operation, bool batchable = false);

  struct Match {
    const Route* route = nullptr;
    std::vector<std::string> params;
    core::Code error = core::Code::not_found;  // when route is null: not_found or method_not_allowed
  };
  Match match(std::string_view method, std::string_view path) const;
  const std::vector<Route>& routes() const { return routes_; }
  const std::string& socket() const { return socket_; }

 private:
  std::string socket_;
  std::vector<Route> routes_;
};

}  // namespace custody::service
