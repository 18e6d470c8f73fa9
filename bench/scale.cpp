#include "bench/scale.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <vector>

#include "bench/daemon_phase.h"
#include "bench/http_connection.h"
#include "bench/key_factory.h"
#include "bench/proc_stats.h"

namespace custody::bench {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// Restarts the daemon and times process start → health answering 200 (Daemon::start polls
// health every 20 ms, the resolution of the figure).
double timed_restart(test::Daemon& daemon) {
  daemon.terminate();
  const auto t0 = Clock::now();
  daemon.start();
  return seconds_since(t0);
}

// Opens the connections, each answered once (health), and leaves them idle, kept alive.
Expected<std::vector<HttpConnection>, std::string> open_idle_connections(const std::string& socket, unsigned n) {
  std::vector<HttpConnection> connections;
  connections.reserve(n);
  const std::string health = http_request("GET", "/v1/health", "");
  for (unsigned i = 0; i < n; ++i) {
    HttpConnection& c = connections.emplace_back(socket);
    auto status = c.round_trip(health);
    if (!status || *status != 200)
      return unexpected("idle connection " + std::to_string(i) + ": " + (status ? "HTTP " + std::to_string(*status) : status.error()));
  }
  return connections;
}

}  // namespace

const char* scale_one_key_row() { return "unwrap c=1, 1 key"; }
std::string scale_many_keys_row(unsigned keys) { return "unwrap c=1, " + std::to_string(keys) + " keys"; }

void run_scale(unsigned keys, double seconds, Report& report) {
  test::DaemonOptions options = bench_daemon_options();
  options.extra_dual_control = kOneApprovalForKeys;
  options.start_timeout = std::chrono::seconds(600);
  test::Daemon daemon(options);

  // The baseline: the same daemon with one key of 5 versions, right after a restart.
  if (auto ok = make_keys(daemon, {"scale-", 0, 1, kScaleVersions, 1}, [](unsigned) {}); !ok)
    return report.add_missing("scale", ok.error());
  auto ciphertext = wrap_dek(daemon, "scale-0");
  if (!ciphertext) return report.add_missing("scale", ciphertext.error());
  const BenchKeys baseline_keys{"scale-0", "", *ciphertext};
  report.set_figure(kScaleStartupOneKeyFigure, timed_restart(daemon));
  if (auto rss = resident_mib(daemon.pid())) report.set_figure(kScaleRssOneKeyFigure, *rss);
  Row one = measure_daemon_row(daemon, baseline_keys, "unwrap", 1, 0, seconds, "scale");
  one.name = scale_one_key_row();
  report.add(std::move(one));

  // Set-up (no row runs meanwhile): every other key with all its versions.
  std::fprintf(stderr, "scale: making %u keys x %u versions through the admin API\n", keys, kScaleVersions);
  const auto setup_start = Clock::now();
  Clock::time_point last_print = setup_start;
  auto progress = [&](unsigned done) {
    if (seconds_since(last_print) < 10 && done != kScaleProbeKeys) return;
    last_print = Clock::now();
    const double elapsed = seconds_since(setup_start);
    std::fprintf(stderr, "scale: %u/%u keys in %.0f s (%.1f keys/s, about %.0f s to go)\n", done + 1, keys, elapsed,
                 done / elapsed, (keys - 1 - done) * elapsed / std::max(1u, done));
  };
  if (keys > 1)
    if (auto ok = make_keys(daemon, {"scale-", 1, keys - 1, kScaleVersions, 4}, progress); !ok)
      return report.add_missing("scale", "set-up failed after " + std::to_string(seconds_since(setup_start)) + " s: " + ok.error());
  report.set_figure(kScaleSetupFigure, seconds_since(setup_start));
  report.set_figure(kScaleKeysFigure, keys);
  std::fprintf(stderr, "scale: set-up took %.0f s\n", seconds_since(setup_start));
  if (auto rss = resident_mib(daemon.pid())) report.set_figure(kScaleRssAfterSetupFigure, *rss);

  report.set_figure(kScaleStartupFigure, timed_restart(daemon));
  if (auto rss = resident_mib(daemon.pid())) report.set_figure(kScaleRssNoIdleFigure, *rss);
  // Like the baseline: right after a restart, before the idle connections come.
  Row many = measure_daemon_row(daemon, baseline_keys, "unwrap", 1, 0, seconds, "scale");
  many.name = scale_many_keys_row(keys);
  report.add(std::move(many));
  auto idle = open_idle_connections(daemon.service_socket(), kIdleConnections);
  if (!idle) return report.add_missing("scale", idle.error());
  report.set_figure(kScaleIdleFigure, kIdleConnections);
  if (auto rss = resident_mib(daemon.pid())) report.set_figure(kScaleRssFigure, *rss);
}

}  // namespace custody::bench
