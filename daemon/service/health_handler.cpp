// GET /v1/health: ok / degraded / unavailable with token and audit detail; 503 when unavailable.
#include "daemon/service/context.h"
#include "daemon/service/routes.h"

namespace custody::service {

Handler make_health_handler(ServiceContext& c) {
  return [&c](Call&) {
    const bool token_ok = c.vault.available();
    const bool audit_ok = c.audit.accepting();
    const char* status = !(token_ok && audit_ok) ? "unavailable" : c.degraded.empty() ? "ok" : "degraded";
    boost::json::object token{{"label", c.token.label},
                              {"manufacturer", c.token.manufacturer},
                              {"model", c.token.model},
                              {"available", token_ok}};
    if (!token_ok) token["reason"] = c.vault.unavailable_reason();
    boost::json::object audit{{"path", c.audit.path()}, {"writable", audit_ok}, {"sequence", c.audit.sequence()}};
    boost::json::object body{{"status", status}, {"token", std::move(token)}, {"audit", std::move(audit)},
                             {"keys", c.registry.size()}};
    if (!c.degraded.empty()) {
      boost::json::array problems;
      for (const auto& d : c.degraded) problems.emplace_back(d);
      body["degraded"] = std::move(problems);
    }
    return json_response(token_ok && audit_ok ? 200 : 503, body);
  };
}

}  // namespace custody::service
