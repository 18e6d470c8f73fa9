#include "bench/daemon_phase.h"

#include "bench/daemon_load.h"

namespace custody::bench {

test::DaemonOptions bench_daemon_options() {
  test::DaemonOptions o;
  o.extra_limits =
      "  max_connections: 2048\n"
      "  max_connections_per_uid: 2048\n"
      "  max_in_flight: 100000\n"
      "  idle_timeout: 300s\n"
      "  request_timeout: 60s\n";
  return o;
}

std::string daemon_row_name(std::string_view op, unsigned connections, unsigned batch_items) {
  return std::string(op) + (batch_items ? " batch" + std::to_string(batch_items) : "") + " c=" + std::to_string(connections);
}

Row measure_daemon_row(test::Daemon& daemon, const BenchKeys& keys, std::string_view op, unsigned connections,
                       unsigned batch_items, double seconds, const std::string& section) {
  LoadPlan plan{daemon.service_socket(), data_plane_request(op, keys, batch_items), connections,
                batch_items ? batch_items : 1, seconds, daemon.pid()};
  Row row = run_load(plan, section, daemon_row_name(op, connections, batch_items));
  print_progress(row);
  return row;
}

void run_daemon_rows(test::Daemon& daemon, const BenchKeys& keys, double seconds, Report& report) {
  for (const auto op : kDataPlaneOps)
    for (const unsigned batch : {0u, kBatchItems})
      for (const unsigned connections : kConnectionCounts)
        report.add(measure_daemon_row(daemon, keys, op, connections, batch, seconds));
}

}  // namespace custody::bench
