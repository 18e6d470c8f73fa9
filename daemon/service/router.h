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
};

class Router {
 public:
  Router& add(std::string method, std::string_view pattern, Handler handler, bool audited = true);

  struct Match {
    const Route* route = nullptr;
    std::vector<std::string> params;
    core::Code error = core::Code::not_found;  // when route is null: not_found or method_not_allowed
  };
  Match match(std::string_view method, std::string_view path) const;

 private:
  std::vector<Route> routes_;
};

}  // namespace custody::service
