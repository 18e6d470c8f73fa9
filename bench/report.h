#pragma once
// The rows and figures one run measured, and the table they print as.
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "bench/stats.h"

namespace custody::bench {

struct Row {
  std::string section;  // "direct", "daemon", "fsync", "p11kit", ...
  std::string name;     // e.g. "unwrap batch64 c=16"
  double ops_per_second = 0;  // items/s for batches
  LatencySummary latency;     // per call or request
  std::optional<double> context_switches_per_request;  // daemon rows
  std::optional<double> rss_mib;                       // daemon rows, at the row's end
  std::uint64_t errors = 0;   // failed requests or batch items
  std::string note;
};

// A finished row's progress line on stderr.
void print_progress(const Row& row);

class Report {
 public:
  void add(Row row);
  const Row* find(const std::string& section, const std::string& name) const;
  // A figure that is not a row (set-up times, RSS with idle connections, limits).
  void set_figure(const std::string& name, double value) { figures_[name] = value; }
  std::optional<double> figure(const std::string& name) const;
  // Why a section has no rows (a missing tool, a failed start): printed under the table.
  void add_missing(const std::string& section, const std::string& reason);

  void print_table(bool markdown) const;

 private:
  std::vector<Row> rows_;
  std::map<std::string, double> figures_;
  std::vector<std::string> missing_;
};

}  // namespace custody::bench
