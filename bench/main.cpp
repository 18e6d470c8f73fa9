// custody-bench: in ONE run on one fresh SoftHSMv2 token, the token's own speed in this process,
// custodyd over its service socket, the fdatasync floor, p11-kit's PKCS#11 remoting, a simulated
// network HSM and the scale figures; then the performance targets as ratios. Table on stdout,
// progress on stderr. Not a test: figures depend on the machine. --fleet N measures a fleet instead:
// N daemons on one token and one scratch PostgreSQL against one daemon alone.
#include <signal.h>
#include <sys/resource.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <exception>
#include <optional>

#include "bench/daemon_phase.h"
#include "bench/direct.h"
#include "bench/durability_none.h"
#include "bench/fleet.h"
#include "bench/fsync_floor.h"
#include "bench/ipc_floor.h"
#include "bench/machine.h"
#include "bench/network_hsm.h"
#include "bench/options.h"
#include "bench/p11kit_peer.h"
#include "bench/scale.h"
#include "bench/targets.h"

namespace {

using namespace custody::bench;

// Runs a phase; a phase that throws (a daemon that does not start) leaves its rows missing.
template <class Phase>
void guarded(Report& report, const char* section, Phase phase) {
  try {
    phase();
  } catch (const std::exception& e) {
    report.add_missing(section, std::string("failed: ") + std::string(e.what()).substr(0, 400));
    std::fprintf(stderr, "%s failed: %s\n", section, e.what());
  }
}

// Phases that share the first daemon, its token and its keys.
void run_first_daemon_phases(const BenchOptions& o, unsigned fsync_samples, Report& report) {
  std::fprintf(stderr, "starting custodyd on a fresh SoftHSMv2 token\n");
  custody::test::Daemon daemon(bench_daemon_options());
  auto keys = make_bench_keys(daemon, "bench-aes", "bench-hmac");
  if (!keys) {
    report.add_missing("daemon", keys.error());
    return;
  }
  if (o.runs("fsync")) {
    guarded(report, "fsync", [&] { run_fsync_floor(daemon.dir(), fsync_samples, report); });
    guarded(report, "ipc", [&] { run_ipc_floor(20'000, report); });
  }
  if (o.runs("direct")) {
    std::fprintf(stderr, "direct: in-process PKCS#11 on the daemon's token (daemon idle)\n");
    guarded(report, "direct", [&] { run_direct(daemon.token(), o.row_seconds, report); });
  }
  if (o.runs("daemon")) {
    std::fprintf(stderr, "daemon: durability %s\n", daemon.options().durability.c_str());
    guarded(report, "daemon", [&] { run_daemon_rows(daemon, *keys, o.row_seconds, report); });
  }
  if (o.runs("p11kit")) {
    std::fprintf(stderr, "p11kit: p11-kit server on the daemon's token (daemon idle)\n");
    guarded(report, "p11kit", [&] { run_p11kit(daemon.token(), daemon.dir(), o.row_seconds, report); });
  }
  if (o.runs("durability-none")) {
    std::fprintf(stderr, "durability-none: the same daemon restarted with audit durability none\n");
    guarded(report, "durability-none", [&] { run_durability_none(daemon, *keys, o.row_seconds, report); });
  }
}

}  // namespace

int main(int argc, char** argv) {
  BenchOptions o;
  unsigned fsync_samples = 500;
  CLI::App app{"custody-bench: custodyd against the token's own speed, in one run"};
  app.add_option("--seconds", o.row_seconds, "measuring time of each row")->capture_default_str()->check(CLI::Range(0.1, 3600.0));
  app.add_flag("--quick", o.quick, "1 s rows, no scale phase");
  std::string sections;
  for (auto s : kSections) sections += (sections.empty() ? "" : ", ") + std::string(s);
  app.add_option("--only", o.only, "run one section: " + sections)
      ->check([](const std::string& s) {
        for (auto known : kSections)
          if (s == known) return std::string();
        return "unknown section " + s;
      });
  app.add_flag("--markdown", o.markdown, "print the table and targets as Markdown (docs/performance.md)");
  app.add_option("--scale-keys", o.scale_keys, "keys of the scale phase, 5 versions each (0: skip it)")->capture_default_str();
  app.add_option("--hsm-workers", o.hsm_workers, "token.workers of the simulated network HSM's daemon")->capture_default_str();
  app.add_option("--fleet", o.fleet,
                 "the fleet mode alone: this many daemons on one token and one scratch PostgreSQL, wrap on each at once, "
                 "against one daemon alone")
      ->check(CLI::Range(1u, 16u));  // the scratch cluster takes 40 connections, two a daemon
  app.add_option("--fleet-connections", o.fleet_connections, "connections per daemon in the fleet mode")
      ->capture_default_str()
      ->check(CLI::Range(1u, 256u));
  app.add_option("--fsync-samples", fsync_samples, "appends timed for the fdatasync floor")->capture_default_str()->check(CLI::Range(1u, 1000000u));
  CLI11_PARSE(app, argc, argv);
  if (o.quick) {
    o.row_seconds = 1;
    o.scale_keys = 0;
  }

  // A daemon closing a connection must fail a request, not kill the run; the scale phase holds
  // a thousand idle connections.
  ::signal(SIGPIPE, SIG_IGN);
  if (rlimit lim{}; ::getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur < lim.rlim_max) {
    lim.rlim_cur = lim.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &lim);
  }

  Report report;
  if (o.fleet > 0) {
    guarded(report, "fleet", [&] { run_fleet(o.fleet, o.fleet_connections, o.row_seconds, report); });
    std::printf(o.markdown ? "%s\n\n" : "%s\n", describe_machine().c_str());
    std::printf(o.markdown ? "Rows of %.1f s; audit durability group.\n\n" : "rows of %.1f s; audit durability group\n\n",
                o.row_seconds);
    report.print_table(o.markdown);
    print_fleet_summary(report, o.fleet, o.fleet_connections, o.markdown);
    return 0;
  }
  if (o.runs("fsync") || o.runs("direct") || o.runs("daemon") || o.runs("p11kit") || o.runs("durability-none"))
    guarded(report, "daemon", [&] { run_first_daemon_phases(o, fsync_samples, report); });
  if (o.runs("network-hsm")) {
    std::fprintf(stderr, "network-hsm: custodyd on the fault shim, %u us per call, %u sessions, workers %s\n",
                 kNetworkHsmLatencyUs, kNetworkHsmSessions, o.hsm_workers.c_str());
    guarded(report, "network-hsm", [&] { run_network_hsm(o.hsm_workers, o.row_seconds, report); });
  }
  if (o.runs("scale") && o.scale_keys > 0) guarded(report, "scale", [&] { run_scale(o.scale_keys, o.row_seconds, report); });

  std::printf(o.markdown ? "%s\n\n" : "%s\n", describe_machine().c_str());
  std::printf(o.markdown ? "Rows of %.1f s; audit durability group unless the section says otherwise.\n\n"
                         : "rows of %.1f s; audit durability group unless the section says otherwise\n\n",
              o.row_seconds);
  report.print_table(o.markdown);
  print_targets(report, o);
  return 0;
}
