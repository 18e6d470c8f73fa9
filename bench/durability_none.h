#pragma once
// The lone-client case without a durable audit: the first daemon restarted (same token, same
// keys) with audit durability `none`, derive and unwrap at one connection.
#include "bench/data_plane_requests.h"
#include "bench/report.h"
#include "tests/support/daemon_process.h"

namespace custody::bench {

// Leaves the daemon running with durability none.
void run_durability_none(test::Daemon& daemon, const BenchKeys& keys, double seconds, Report& report);

}  // namespace custody::bench
