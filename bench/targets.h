#pragma once
// Issue #10's targets as ratios of this run's rows, each printed as holds / misses with its figure.
#include "bench/options.h"
#include "bench/report.h"

namespace custody::bench {

void print_targets(const Report& report, const BenchOptions& options);

}  // namespace custody::bench
