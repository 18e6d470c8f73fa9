#pragma once
// The socket load generator: N keep-alive connections, one client thread each, every one sending
// the same prebuilt request one at a time for a fixed time, while the daemon's context switches
// are counted around the row.
#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "bench/report.h"

namespace custody::bench {

struct LoadPlan {
  std::string socket_path;
  std::string request;  // the exact HTTP bytes, sent as they are
  unsigned connections = 1;
  unsigned items_per_request = 1;  // > 1: a batch; every item's result is checked
  double seconds = 3;
  pid_t daemon_pid = -1;
};

// Runs the plan and turns it into a row (ops/s are items/s for batches). Connecting and a first
// request on each connection happen before the clock starts.
Row run_load(const LoadPlan& plan, std::string section, std::string name);

// Runs every plan at once (one daemon each, say), over one shared measuring window: a row per
// plan named names[i], then a total row named total_name (ops/s summed, latencies of every plan
// together, no context switches or RSS).
std::vector<Row> run_loads_at_once(const std::vector<LoadPlan>& plans, const std::string& section,
                                   const std::vector<std::string>& names, const std::string& total_name);

}  // namespace custody::bench
