#include "bench/durability_none.h"

#include "bench/daemon_phase.h"

namespace custody::bench {

void run_durability_none(test::Daemon& daemon, const BenchKeys& keys, double seconds, Report& report) {
  std::string config = test::read_file(daemon.config_path());
  const std::string from = "  durability: " + daemon.options().durability + "\n";
  const auto at = config.find(from);
  if (at == std::string::npos) return report.add_missing("durability-none", "no audit durability line in " + daemon.config_path());
  config.replace(at, from.size(), "  durability: none\n");
  test::write_file(daemon.config_path(), config);
  daemon.terminate();
  daemon.options().durability = "none";
  daemon.start();
  for (const char* op : {"derive", "unwrap"}) report.add(measure_daemon_row(daemon, keys, op, 1, 0, seconds, "durability-none"));
}

}  // namespace custody::bench
