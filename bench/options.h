#pragma once
// What one custody-bench run measures and for how long.
#include <string>
#include <string_view>

namespace custody::bench {

struct BenchOptions {
  double row_seconds = 3;     // measuring time of each row
  bool quick = false;         // 1 s rows, no scale phase
  std::string only;           // run this section alone (empty: all)
  bool markdown = false;      // the table as Markdown
  unsigned scale_keys = 10000;  // keys of the scale phase (0: skip it)
  std::string hsm_workers = "16";  // token.workers of the simulated network HSM's daemon
  unsigned fleet = 0;              // > 0: the fleet mode alone, with this many daemons (docs/fleet.md)
  unsigned fleet_connections = 16;  // connections per daemon in the fleet mode

  bool runs(std::string_view section) const { return only.empty() || only == section; }
};

// The sections --only accepts, in the order a full run measures them.
inline constexpr std::string_view kSections[] = {"fsync", "direct", "daemon", "p11kit", "durability-none",
                                                 "network-hsm", "scale"};

}  // namespace custody::bench
