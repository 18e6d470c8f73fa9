// GET /metrics in the Prometheus text exposition format (version 0.0.4). The format is a few
// lines of text; a client library would add a dependency for no gain here. docs/metrics.md
// lists every family with its meaning and the alert that watches it.
#include <chrono>

#include "daemon/service/context.h"
#include "daemon/service/routes.h"

namespace custody::service {
namespace {

// A key whose version has done this share of its usage limit is "near" it (rotation compliance).
constexpr double kNearUsageLimit = 0.9;

std::uint64_t u64(std::size_t n) { return static_cast<std::uint64_t>(n); }

void expose_transport(Exposition& out, const Metrics& m) {
  out.family("custody_responses_total", "counter", "HTTP responses sent, by status class.");
  for (int cls = 2; cls <= 5; ++cls)
    out.sample("custody_responses_total", {{"class", std::to_string(cls) + "xx"}}, m.responses(cls));
  out.single("custody_requests_in_flight", "gauge", "Requests being handled now.", m.in_flight());
  out.single("custody_connections_rejected_total", "counter", "Connections refused at the connection limit.",
             m.rejected_connections());
  out.family("custody_transport_refusals_total", "counter",
             "Connections and requests the transport turned away, by reason (uid_rate: rate limit; "
             "listener_full, uid_connections: connection limits).");
  for (std::size_t i = 0; i < std::size(kRefusalNames); ++i)
    out.sample("custody_transport_refusals_total", {{"reason", kRefusalNames[i]}}, m.refusals(static_cast<Refusal>(i)));
}

void expose_token(Exposition& out, ServiceContext& c) {
  out.single("custody_token_available", "gauge", "1 when the token answers.", std::uint64_t{c.vault.available()});
  out.single("custody_token_operations_total", "counter", "PKCS#11 operations run on the token for keys.",
             c.vault.operations());
  if (!c.pool) return;
  const auto usage = c.pool->usage();
  out.single("custody_token_sessions_in_use", "gauge", "Token sessions leased to a call now.", u64(usage.leased));
  out.single("custody_token_sessions_open", "gauge", "Token sessions open (idle and in use).", u64(usage.open));
  out.single("custody_token_sessions_max", "gauge", "The most token sessions the pool opens (token.sessions).",
             u64(usage.capacity));
  out.single("custody_token_resets_total", "counter",
             "Module resets (finalize, initialize, log in again) after a device error.", c.pool->generation());
  out.family("custody_token_call_duration_seconds", "histogram",
             "Time each call on a token session took (one attempt; the wait for a session not included).");
  out.histogram("custody_token_call_duration_seconds", {}, c.pool->call_durations().snapshot());
}

void expose_audit(Exposition& out, ServiceContext& c) {
  out.single("custody_audit_records_total", "counter", "Audit records written since start.", c.audit.records_written());
  out.single("custody_audit_writable", "gauge", "1 when the audit log accepts records.", std::uint64_t{c.audit.accepting()});
  const auto storage = c.audit.storage();
  out.single("custody_audit_files", "gauge", "Audit log files on disk (the live one and the rotated ones kept).",
             storage.files);
  out.single("custody_audit_bytes", "gauge", "Bytes of all audit log files on disk.", storage.bytes);
  if (storage.free_bytes)
    out.single("custody_audit_disk_free_bytes", "gauge", "Free bytes on the audit log's filesystem.", *storage.free_bytes);
  out.single("custody_audit_disk_low", "gauge",
             "1 when the audit filesystem has less free space than audit.min_free_bytes.",
             std::uint64_t{storage.low_on_space()});
  out.single("custody_audit_last_checkpoint_age_seconds", "gauge",
             "Seconds since the newest signed checkpoint was written (since the log was opened, if none since).",
             std::chrono::duration<double>(c.audit.since_last_checkpoint()).count());
  out.family("custody_audit_fsync_duration_seconds", "histogram", "Time each fdatasync of a group of audit records took.");
  out.histogram("custody_audit_fsync_duration_seconds", {}, c.audit.sync_durations().snapshot());
}

void expose_keys(Exposition& out, ServiceContext& c) {
  const auto report = c.health.reconcile();
  out.single("custody_key_objects_missing", "gauge", "Key versions whose token object is missing (last check).",
             u64(report.missing.size()));
  out.single("custody_key_objects_altered", "gauge", "Key versions whose token object has other attributes.",
             u64(report.altered.size()));
  out.single("custody_stray_objects", "gauge", "Custody-labelled token objects the state does not know.",
             u64(report.strays.size()));
  out.single("custody_pending_destruction_uses_total", "counter", "Attempts to use a key scheduled for destruction.",
             c.data_plane.pending_destruction_uses());
  // Rotation compliance, from the keys as they are now (keys are few).
  const auto now = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  const auto keys = c.registry.all();
  std::uint64_t overdue = 0, near_limit = 0, pending_destruction = 0;
  for (const auto& key : keys) {
    if (key->state == core::KeyState::pending_destruction) ++pending_destruction;
    if (key->state != core::KeyState::enabled) continue;
    const core::KeyVersion* current = key->find_version(key->current_version);
    if (!current) continue;
    if (key->rotation.period_seconds && now - current->created_at > *key->rotation.period_seconds) ++overdue;
    if (c.meter && key->algorithm == core::Algorithm::aes_256_gcm) {
      // A count that cannot be read is not counted here: the encryption itself fails closed.
      auto used = c.meter->used(key->name, current->version);
      if (used && static_cast<double>(*used) >= kNearUsageLimit * static_cast<double>(key->rotation.usage_limit))
        ++near_limit;
    }
  }
  out.single("custody_keys", "gauge", "Keys known to the daemon.", u64(keys.size()));
  out.single("custody_keys_rotation_overdue", "gauge",
             "Enabled keys whose current version is older than their rotation period.", overdue);
  out.single("custody_keys_near_usage_limit", "gauge",
             "Enabled aes-256-gcm keys whose current version has done at least 90 % of its usage limit.", near_limit);
  out.single("custody_pending_destructions", "gauge", "Keys scheduled for destruction.", pending_destruction);
  if (c.jobs) {
    std::uint64_t active = 0;
    for (const auto& job : c.jobs->list()) active += job.state == "active";
    out.single("custody_import_jobs_active", "gauge", "BYOK import jobs that can still import.", active);
  }
}

void expose_admin(Exposition& out, ServiceContext& c, const Metrics& m) {
  if (!c.requests) return;
  std::uint64_t expired = 0, pending = 0;
  for (const auto& r : c.requests->list()) {
    expired += r.state == "expired";
    pending += r.state == "pending";
  }
  out.family("custody_admin_requests_total", "counter",
             "Dual-control admin requests: proposed, approved (each accepted approval), executed and failed since "
             "start; expired counted from the stored requests.");
  for (std::size_t i = 0; i < std::size(kAdminEventNames); ++i)
    out.sample("custody_admin_requests_total", {{"event", kAdminEventNames[i]}}, m.admin_events(static_cast<AdminEvent>(i)));
  out.sample("custody_admin_requests_total", {{"event", "expired"}}, expired);
  out.single("custody_admin_requests_pending", "gauge", "Admin requests waiting for approvals.", pending);
  out.single("custody_admin_changes_unaudited_total", "counter",
             "Admin changes that ran without their admin.execute record being written (must stay 0).",
             m.unaudited_admin_changes());
}

}  // namespace

Handler make_metrics_handler(ServiceContext& c) {
  return [&c](Call&) {
    Exposition out;
    c.metrics.expose_requests(out);
    expose_transport(out, c.metrics);
    c.metrics.expose_keys(out);
    expose_keys(out, c);
    expose_admin(out, c, c.metrics);
    expose_token(out, c);
    expose_audit(out, c);
    return Response{200, out.take(), "text/plain; version=0.0.4"};
  };
}

}  // namespace custody::service
