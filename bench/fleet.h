#pragma once
// custody-bench --fleet N (docs/fleet.md, docs/performance.md): N custodyd on ONE SoftHSMv2 token
// sharing one scratch PostgreSQL, the same wrap load on every daemon at once; beside it, in the
// same run, one daemon alone on the single-host default (SQLite) and one alone on PostgreSQL.
#include "bench/report.h"

namespace custody::bench {

inline constexpr unsigned kFleetConnections = 16;  // per daemon: the daemon section's c=16 row

// The fleet's rows (section "fleet"); why they are missing when PostgreSQL or a daemon is not there.
void run_fleet(unsigned daemons, unsigned connections, double seconds, Report& report);

// The totals against the single-host figure, as ratios, after the table.
void print_fleet_summary(const Report& report, unsigned daemons, unsigned connections, bool markdown);

}  // namespace custody::bench
