// GET /v1/health: ok / degraded / unavailable with token, audit and state-store detail; 503 when
// unavailable.
#include "daemon/service/context.h"
#include "daemon/service/routes.h"

namespace custody::service {

Handler make_health_handler(ServiceContext& c, bool admin) {
  return [&c, admin](Call&) {
    // A token error left the pool waiting for a reset that only the next request would make: a
    // probe-only readiness check would then see "unavailable" for good. Make the reset here.
    const bool token_ok = c.vault.available() || (c.pool && c.pool->try_recover() && c.vault.available());
    const bool audit_ok = c.audit.accepting();
    const auto storage = c.audit.storage();
    const auto report = c.health.reconcile();
    // A store that cannot be read or written fails every request that needs it: unavailable.
    const auto store_failing = c.health.store_failing();
    const bool store_ok = !store_failing;
    // A fleet member serving a view older than state.max_staleness refuses the data plane.
    const auto fleet = c.health.fleet();
    const bool fleet_ok = !fleet || !fleet->stale();
    const auto undestroyed_pairs = c.jobs ? c.jobs->undestroyed_pairs() : std::vector<std::string>{};
    // Low disk is degraded, not unavailable: service goes on, but the log fails closed once full.
    const bool degraded = c.health.degraded() || storage.low_on_space() || !undestroyed_pairs.empty();
    const bool available = token_ok && audit_ok && store_ok && fleet_ok;
    const char* status = !available ? "unavailable" : degraded ? "degraded" : "ok";
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
    if (const auto* store = c.health.store()) {
      boost::json::object state{{"readable", store_ok}, {"errors", store->errors()}};
      // The path and SQLite's message are for the admin socket; the service socket learns only
      // that the store is failing.
      if (admin) state["path"] = store->path();
      if (store_failing) state["reason"] = admin ? *store_failing : std::string("the state database cannot be read or written");
      body["state"] = std::move(state);
    }
    if (fleet) {
      boost::json::object sync{{"in_sync", !fleet->failing},
                               {"stale", !fleet_ok},
                               {"unsynced_ms", fleet->unsynced_for.count()},
                               {"max_staleness_ms", fleet->max_staleness.count()}};
      if (fleet->failing)
        sync["reason"] = admin ? *fleet->failing : std::string("the shared state database cannot be reached");
      body["fleet_sync"] = std::move(sync);
    }
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
    if (!report.undestroyed.empty()) body["undestroyed_objects"] = list(report.undestroyed);
    boost::json::object alarms;
    // Someone still depends on a key that is about to be destroyed.
    if (auto uses = c.data_plane.pending_destruction_uses()) alarms["pending_destruction_uses"] = uses;
    // An import job's key pair the token would not destroy (the job is used or expired).
    if (!undestroyed_pairs.empty()) alarms["import_pairs_not_destroyed"] = list(undestroyed_pairs);
    if (!alarms.empty()) body["alarms"] = std::move(alarms);
    return json_response(available ? 200 : 503, body);
  };
}

}  // namespace custody::service
