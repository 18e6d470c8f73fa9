#include "bench/targets.h"

#include <cstdio>
#include <string>

#include "bench/daemon_phase.h"
#include "bench/direct.h"
#include "bench/fsync_floor.h"
#include "bench/ipc_floor.h"
#include "bench/network_hsm.h"
#include "bench/p11kit_peer.h"
#include "bench/scale.h"

namespace custody::bench {

namespace {

class TargetPrinter {
 public:
  explicit TargetPrinter(bool markdown) : markdown_(markdown) {}

  // figure against a bound: at least (or at most) bound.
  void check(const std::string& name, std::optional<double> figure, bool at_least, double bound, const std::string& detail,
             const std::string& missing_reason) {
    if (!figure) return line("n/a", name + ": " + missing_reason);
    const bool holds = at_least ? *figure >= bound : *figure <= bound;
    char text[512];
    std::snprintf(text, sizeof text, "%s = %.4g (target %s %.4g)%s%s", name.c_str(), *figure, at_least ? ">=" : "<=", bound,
                  detail.empty() ? "" : "; ", detail.c_str());
    line(holds ? "holds" : "misses", text);
  }
  void info(const std::string& text) { line("info", text); }

 private:
  void line(const char* verdict, const std::string& text) {
    if (markdown_) std::printf("- **%s**: %s\n", verdict, text.c_str());
    else std::printf("  %-7s %s\n", verdict, text.c_str());
  }
  bool markdown_;
};

std::optional<double> ops(const Report& r, const std::string& section, const std::string& name) {
  const Row* row = r.find(section, name);
  if (!row || row->ops_per_second <= 0) return std::nullopt;
  return row->ops_per_second;
}

std::optional<double> ratio(std::optional<double> a, std::optional<double> b) {
  if (!a || !b || *b <= 0) return std::nullopt;
  return *a / *b;
}

std::string figures(const char* format, double a, double b) {
  char text[256];
  std::snprintf(text, sizeof text, format, a, b);
  return text;
}

// A row with errors does not count as holding a target: it is flagged next to the figure.
std::string errors_of(const Report& r, const std::string& section, const std::string& name) {
  const Row* row = r.find(section, name);
  return row && row->errors ? "; ROW HAD " + std::to_string(row->errors) + " ERRORS" : "";
}

}  // namespace

void print_targets(const Report& r, const BenchOptions& options) {
  TargetPrinter t(options.markdown);
  std::printf(options.markdown ? "\n### Targets\n\n" : "\nTargets, ratios of this run:\n");
  const auto direct = ops(r, "direct", kDirectDecryptRow);
  const std::string not_run = "a section it needs was not measured (see above)";

  const std::string u16 = daemon_row_name("unwrap", 16, 0);
  const auto unwrap16 = ops(r, "daemon", u16);
  t.check("unwrap c=16 / direct GCM decrypt", ratio(unwrap16, direct), true, 0.8,
          unwrap16 && direct ? figures("%.0f / %.0f ops/s", *unwrap16, *direct) + errors_of(r, "daemon", u16) : "", not_run);

  const std::string b4 = daemon_row_name("unwrap", 4, kBatchItems);
  const auto batch4 = ops(r, "daemon", b4);
  t.check("unwrap batch64 c=4 / direct GCM decrypt", ratio(batch4, direct), true, 0.95,
          batch4 && direct ? figures("%.0f / %.0f items/s", *batch4, *direct) + errors_of(r, "daemon", b4) : "", not_run);
  for (unsigned c : kConnectionCounts)
    if (auto x = ratio(ops(r, "daemon", daemon_row_name("unwrap", c, kBatchItems)), direct); x && c != 4)
      t.info(figures("unwrap batch64 c=%.0f / direct = %.3g", c, *x));

  const Row* row16 = r.find("daemon", u16);
  t.check("unwrap p99 at c=16, µs", row16 ? std::optional(row16->latency.p99_us) : std::nullopt, false, 1000, "", not_run);

  const Row* row1 = r.find("daemon", daemon_row_name("unwrap", 1, 0));
  const Row* fsync = r.find("fsync", kFsyncRow);
  t.check("unwrap p50 at c=1, µs (bound: fdatasync floor p50 + 60 µs)",
          row1 && fsync ? std::optional(row1->latency.p50_us) : std::nullopt, false,
          fsync ? fsync->latency.p50_us + 60 : 0, fsync ? figures("floor %.1f µs", fsync->latency.p50_us, 0) : "",
          not_run);
  // What a lone request cannot avoid on this machine: the sync, and one round trip between processes.
  if (const Row* ipc = r.find("ipc", kIpcRow); ipc && row1 && fsync)
    t.info(figures("unwrap p50 at c=1 minus fdatasync floor = %.0f µs; a bare round trip between two processes is %.0f µs here",
                   row1->latency.p50_us - fsync->latency.p50_us, ipc->latency.p50_us));

  const auto derive16 = ops(r, "daemon", daemon_row_name("derive", 16, 0));
  const auto p11kit16 = ops(r, "p11kit", p11kit_row_name(16));
  t.check("derive c=16 / p11-kit HMAC t=16", ratio(derive16, p11kit16), true, 3,
          derive16 && p11kit16 ? figures("%.0f / %.0f ops/s", *derive16, *p11kit16) : "", not_run);

  const auto derive1_none = ops(r, "durability-none", daemon_row_name("derive", 1, 0));
  const auto p11kit1 = ops(r, "p11kit", p11kit_row_name(1));
  t.check("derive c=1 (durability none) / p11-kit HMAC t=1", ratio(derive1_none, p11kit1), true, 1,
          derive1_none && p11kit1 ? figures("%.0f / %.0f ops/s", *derive1_none, *p11kit1) : "", not_run);

  t.check("context switches per request, unwrap c=16",
          row16 ? row16->context_switches_per_request : std::nullopt, false, 1, "", not_run);

  const std::string hsm_row = daemon_row_name("unwrap", kNetworkHsmConnections, 0);
  const auto hsm = ops(r, "network-hsm", hsm_row);
  const auto limit = r.figure(kNetworkHsmLimitFigure);
  t.check("simulated network HSM: unwrap c=64 / (sessions ÷ latency)", ratio(hsm, limit), true, 0.9,
          hsm && limit ? figures("%.0f / %.0f ops/s", *hsm, *limit) + errors_of(r, "network-hsm", hsm_row) : "", not_run);

  const auto keys = r.figure(kScaleKeysFigure);
  const std::string scale_missing = options.scale_keys == 0 ? "scale phase skipped (--scale-keys 0 or --quick)" : not_run;
  const std::string at = keys ? figures("at %.0f keys x %.0f versions", *keys, kScaleVersions) : "";
  t.check("RSS with keys and " + std::to_string(kIdleConnections) + " idle connections, MiB", r.figure(kScaleRssFigure),
          false, 64, at, scale_missing);
  t.check("start-up to health, s", r.figure(kScaleStartupFigure), false, 5, at, scale_missing);
  const Row* one = r.find("scale", scale_one_key_row());
  const Row* many = keys ? r.find("scale", scale_many_keys_row(static_cast<unsigned>(*keys))) : nullptr;
  t.check("unwrap p50 many keys / 1 key", one && many ? ratio(many->latency.p50_us, one->latency.p50_us) : std::nullopt,
          false, 1.10, one && many ? figures("%.1f / %.1f µs", many->latency.p50_us, one->latency.p50_us) : "", scale_missing);
  t.check("unwrap p99 many keys / 1 key", one && many ? ratio(many->latency.p99_us, one->latency.p99_us) : std::nullopt,
          false, 1.10, one && many ? figures("%.1f / %.1f µs", many->latency.p99_us, one->latency.p99_us) : "", scale_missing);
  if (auto s = r.figure(kScaleSetupFigure); s && keys)
    t.info(figures("scale set-up through the admin API: %.0f s for %.0f keys", *s, *keys) +
           figures(" (%.1f keys/s, %.0f versions each)", *keys / *s, kScaleVersions));
  for (const auto& [figure, text] : {std::pair{kScaleRssOneKeyFigure, "RSS with 1 key, MiB"},
                                     std::pair{kScaleRssAfterSetupFigure, "RSS right after making the keys, MiB"},
                                     std::pair{kScaleRssNoIdleFigure, "RSS after a restart with the keys, no idle connection, MiB"},
                                     std::pair{kScaleStartupOneKeyFigure, "start-up with 1 key, s"}})
    if (auto v = r.figure(figure)) t.info(std::string(text) + figures(": %.2f", *v, 0));
}

}  // namespace custody::bench
