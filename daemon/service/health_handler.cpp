// GET /v1/health: ok / degraded / unavailable with token and audit detail; 503 when unavailable.
#include "daemon/service/context.h"
#include "daemon/service/routes.h"

namespace custody::service {

Handler make_health_handler(ServiceContext& c, bool admin) {
  return [&c, admin](Call&) {
    const bool token_ok = c.vault.available();
    const bool audit_ok = c.audit.accepting();
    const auto storage = c.audit.storage();
    const auto report = c.health.reconcile();
    // Low disk is degraded, not unavailable: service goes on, but the log fails closed once full.
    const bool degraded = c.health.degraded() || storage.low_on_space();
    const char* status = !(token_ok && audit_ok) ? "unavailable" : degraded ? "degraded" : "ok";
    boost::json::object token{{"label", c.token.label},
                              {"manufacturer", c.token.manufacturer},
                              {"model", c.token.model},
                              {"available", token_ok}};
    if (!token_ok) token["reason"] = c.vault.unavailable_reason();
    boost::json::object audit{{"path", c.audit.path()},   {"writable", audit_ok},      {"sequence", c.audit.sequence()},
                              {"files", storage.files}, {"bytes", storage.bytes}, {"min_free_bytes", storage.min_free_bytes}};
    if (storage.free_bytes) audit["free_bytes"] = *storage.free_bytes;
    if (storage.low_on_space()) {
      audit["low_on_space"] = true;
      audit["reason"] = storage.free_bytes
                            ? "the audit filesystem has " + std::to_string(*storage.free_bytes) +
                                  " bytes free, under audit.min_free_bytes (" + std::to_string(storage.min_free_bytes) +
                                  "); once it is full every request fails closed"
                            : std::string("the free space of the audit filesystem cannot be read");
    }
    boost::json::object body{{"status", status}, {"token", std::move(token)}, {"audit", std::move(audit)}};
    // Any local peer that can connect may ask the service socket: it learns that something is
    // wrong, never which keys exist (the same reason an unknown key answers 403 there).
    if (admin) body["keys"] = c.registry.size();
    auto list = [admin](const std::vector<std::string>& items) -> boost::json::value {
      if (!admin) return items.size();
      boost::json::array a;
      for (const auto& i : items) a.emplace_back(i);
      return a;
    };
    if (!report.missing.empty()) body["missing_objects"] = list(report.missing);
    if (!report.altered.empty()) body["altered_objects"] = list(report.altered);
    if (!report.strays.empty()) body["stray_objects"] = list(report.strays);
    // Someone still depends on a key that is about to be destroyed.
    if (auto uses = c.data_plane.pending_destruction_uses())
      body["alarms"] = {{"pending_destruction_uses", uses}};
    return json_response(token_ok && audit_ok ? 200 : 503, body);
  };
}

}  // namespace custody::service
