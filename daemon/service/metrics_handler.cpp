// GET /metrics in the Prometheus text exposition format (version 0.0.4). The format is a few
// lines of text; a client library would add a dependency for no gain here.
#include <sstream>

#include "daemon/service/context.h"
#include "daemon/service/routes.h"

namespace custody::service {
namespace {

void metric(std::ostringstream& out, const char* name, const char* type, const char* help, const std::string& samples) {
  out << "# HELP " << name << ' ' << help << "\n# TYPE " << name << ' ' << type << '\n' << samples;
}

}  // namespace

Handler make_metrics_handler(ServiceContext& c) {
  return [&c](Call&) {
    std::ostringstream out;
    std::ostringstream responses;
    for (int cls = 2; cls <= 5; ++cls)
      responses << "custody_responses_total{class=\"" << cls << "xx\"} " << c.metrics.responses(cls) << '\n';
    metric(out, "custody_responses_total", "counter", "HTTP responses sent, by status class.", responses.str());
    metric(out, "custody_requests_in_flight", "gauge", "Requests being handled now.",
           "custody_requests_in_flight " + std::to_string(c.metrics.in_flight()) + "\n");
    metric(out, "custody_connections_rejected_total", "counter", "Connections refused at the connection limit.",
           "custody_connections_rejected_total " + std::to_string(c.metrics.rejected_connections()) + "\n");
    std::ostringstream refusals;
    for (std::size_t i = 0; i < std::size(kRefusalNames); ++i)
      refusals << "custody_transport_refusals_total{reason=\"" << kRefusalNames[i] << "\"} "
               << c.metrics.refusals(static_cast<Refusal>(i)) << '\n';
    metric(out, "custody_transport_refusals_total", "counter",
           "Connections and requests the transport turned away, by reason.", refusals.str());
    metric(out, "custody_token_operations_total", "counter", "PKCS#11 operations run on the token.",
           "custody_token_operations_total " + std::to_string(c.vault.operations()) + "\n");
    metric(out, "custody_token_available", "gauge", "1 when the token answers.",
           std::string("custody_token_available ") + (c.vault.available() ? "1" : "0") + "\n");
    metric(out, "custody_audit_records_total", "counter", "Audit records written since start.",
           "custody_audit_records_total " + std::to_string(c.audit.records_written()) + "\n");
    metric(out, "custody_audit_writable", "gauge", "1 when the audit log accepts records.",
           std::string("custody_audit_writable ") + (c.audit.accepting() ? "1" : "0") + "\n");
    const auto storage = c.audit.storage();
    metric(out, "custody_audit_files", "gauge", "Audit log files on disk (the live one and the rotated ones kept).",
           "custody_audit_files " + std::to_string(storage.files) + "\n");
    metric(out, "custody_audit_bytes", "gauge", "Bytes of all audit log files on disk.",
           "custody_audit_bytes " + std::to_string(storage.bytes) + "\n");
    if (storage.free_bytes)
      metric(out, "custody_audit_disk_free_bytes", "gauge", "Free bytes on the audit log's filesystem.",
             "custody_audit_disk_free_bytes " + std::to_string(*storage.free_bytes) + "\n");
    metric(out, "custody_audit_disk_low", "gauge", "1 when the audit filesystem has less free space than audit.min_free_bytes.",
           std::string("custody_audit_disk_low ") + (storage.low_on_space() ? "1" : "0") + "\n");
    const auto report = c.health.reconcile();
    metric(out, "custody_key_objects_missing", "gauge", "Key versions whose token object is missing (last check).",
           "custody_key_objects_missing " + std::to_string(report.missing.size()) + "\n");
    metric(out, "custody_key_objects_altered", "gauge", "Key versions whose token object has other attributes.",
           "custody_key_objects_altered " + std::to_string(report.altered.size()) + "\n");
    metric(out, "custody_stray_objects", "gauge", "Custody-labelled token objects the state does not know.",
           "custody_stray_objects " + std::to_string(report.strays.size()) + "\n");
    metric(out, "custody_pending_destruction_uses_total", "counter", "Attempts to use a key scheduled for destruction.",
           "custody_pending_destruction_uses_total " + std::to_string(c.data_plane.pending_destruction_uses()) + "\n");
    metric(out, "custody_keys", "gauge", "Keys known to the daemon.", "custody_keys " + std::to_string(c.registry.size()) + "\n");
    return Response{200, out.str(), "text/plain; version=0.0.4"};
  };
}

}  // namespace custody::service
