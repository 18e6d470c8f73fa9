#pragma once
// The daemon rows: every data-plane operation over the service socket at 1, 4, 16 and 64
// connections, single requests and batches of 64.
#include <string>
#include <string_view>

#include "bench/data_plane_requests.h"
#include "bench/report.h"
#include "tests/support/daemon_process.h"

namespace custody::bench {

inline constexpr unsigned kConnectionCounts[] = {1, 4, 16, 64};
inline constexpr unsigned kBatchItems = 64;

// Limits raised so that 64 connections of this uid, each with a batch of 64 in flight, are
// admitted (plus the harness's own clients and the scale phase's idle ones).
test::DaemonOptions bench_daemon_options();

// "unwrap c=16", "unwrap batch64 c=16"
std::string daemon_row_name(std::string_view op, unsigned connections, unsigned batch_items);

// One row; progress on stderr.
Row measure_daemon_row(test::Daemon& daemon, const BenchKeys& keys, std::string_view op, unsigned connections,
                       unsigned batch_items, double seconds, const std::string& section = "daemon");

void run_daemon_rows(test::Daemon& daemon, const BenchKeys& keys, double seconds, Report& report);

}  // namespace custody::bench
