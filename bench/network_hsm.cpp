#include "bench/network_hsm.h"

#include <cstdio>

#include "bench/daemon_phase.h"

namespace custody::bench {

void run_network_hsm(const std::string& workers, double seconds, Report& report) {
  test::DaemonOptions options = bench_daemon_options();
  options.module = CUSTODY_FAULT_SHIM;
  options.env["CUSTODY_SHIM_LATENCY_US"] = std::to_string(kNetworkHsmLatencyUs);
  options.token_sessions = kNetworkHsmSessions;
  options.token_workers = workers;
  test::Daemon daemon(options);
  auto keys = make_bench_keys(daemon, "hsm-aes", "hsm-hmac");
  if (!keys) return report.add_missing("network-hsm", keys.error());
  report.set_figure(kNetworkHsmLimitFigure, kNetworkHsmSessions * 1e6 / kNetworkHsmLatencyUs);
  Row row = measure_daemon_row(daemon, *keys, "unwrap", kNetworkHsmConnections, 0, seconds, "network-hsm");
  row.note += (row.note.empty() ? "" : "; ") + std::to_string(kNetworkHsmLatencyUs) + " us per call, " +
              std::to_string(kNetworkHsmSessions) + " sessions, workers " + workers;
  report.add(std::move(row));
}

}  // namespace custody::bench
