#include "bench/fleet.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "bench/daemon_load.h"
#include "bench/daemon_phase.h"
#include "bench/data_plane_requests.h"
#include "tests/support/postgres_cluster.h"

namespace custody::bench {

namespace {

using Clock = std::chrono::steady_clock;

std::string op_name(unsigned connections) { return daemon_row_name("wrap", connections, 0); }
std::string single_row(unsigned c) { return "single-host sqlite " + op_name(c); }
std::string alone_row(unsigned c) { return "one daemon postgresql " + op_name(c); }
std::string member_row(unsigned i, unsigned n, unsigned c) {
  return "daemon " + std::to_string(i) + "/" + std::to_string(n) + " " + op_name(c);
}
std::string total_row(unsigned n, unsigned c) { return "fleet total x" + std::to_string(n) + " " + op_name(c); }

test::DaemonOptions member_options(const test::PostgresCluster& cluster, const std::string& database,
                                   const test::Daemon* first) {
  test::DaemonOptions o = bench_daemon_options();
  if (first) {
    o.shared_token = first->token();
    o.operator_keys_from = first->dir();
  }
  const auto settings = cluster.settings(database);
  o.state_yaml = "  backend: postgresql\n  dsn: \"" + settings.dsn + "\"\n  password_file: " + settings.password_file + "\n";
  return o;
}

// The wrap row of one daemon alone, under the fleet's row name.
Row measure_wrap(test::Daemon& daemon, const BenchKeys& keys, unsigned connections, double seconds, std::string name) {
  LoadPlan plan{daemon.service_socket(), data_plane_request("wrap", keys, 0), connections, 1, seconds, daemon.pid()};
  Row row = run_load(plan, "fleet", std::move(name));
  print_progress(row);
  return row;
}

// A key made through the first daemon reaches the others within the propagation bound (1 s plus
// the token's own delay): wait for each to serve it before the clock starts.
bool wait_until_served(test::Daemon& daemon, const std::string& key) {
  const auto deadline = Clock::now() + std::chrono::seconds(10);
  while (Clock::now() < deadline)
    if (daemon.post("/v1/keys/" + key + "/wrap", {{"plaintext", "aGk="}}).first == 200) return true;
  return false;
}

}  // namespace

void run_fleet(unsigned daemons, unsigned connections, double seconds, Report& report) {
  {
    std::fprintf(stderr, "fleet: the single-host figure: one custodyd on its own token, SQLite state\n");
    test::Daemon single(bench_daemon_options());
    auto keys = make_bench_keys(single, "single-aes", "single-hmac");
    if (!keys) return report.add_missing("fleet", "single host: " + keys.error());
    report.add(measure_wrap(single, *keys, connections, seconds, single_row(connections)));
  }

  if (auto reason = test::PostgresCluster::unavailable_reason(); !reason.empty())
    return report.add_missing("fleet", reason);
  std::fprintf(stderr, "fleet: a scratch PostgreSQL and %u custodyd on one SoftHSMv2 token\n", daemons);
  auto cluster = test::PostgresCluster::start();
  if (!cluster) return report.add_missing("fleet", "PostgreSQL: " + cluster.error());
  const std::string database = "custody_bench";
  if (auto made = (*cluster)->create_database(database); !made) return report.add_missing("fleet", made.error());

  // One after another: a daemon makes the token's attestation key at start when it finds none,
  // and daemons starting together on a fresh token would each make one.
  std::vector<std::unique_ptr<test::Daemon>> members;
  const auto started = Clock::now();
  for (unsigned i = 0; i < daemons; ++i)
    members.push_back(std::make_unique<test::Daemon>(member_options(**cluster, database, i ? members[0].get() : nullptr)));
  report.set_figure("fleet.start_seconds", std::chrono::duration<double>(Clock::now() - started).count());
  auto keys = make_bench_keys(*members[0], "fleet-aes", "fleet-hmac");
  if (!keys) return report.add_missing("fleet", keys.error());
  for (unsigned i = 1; i < daemons; ++i)
    if (!wait_until_served(*members[i], keys->aes))
      return report.add_missing("fleet", "daemon " + std::to_string(i + 1) + " never served the key daemon 1 made");

  // One member alone: what the PostgreSQL store costs a daemon's request path (nothing per request).
  report.add(measure_wrap(*members[0], *keys, connections, seconds, alone_row(connections)));

  std::fprintf(stderr, "fleet: wrap at c=%u on each of the %u daemons at once\n", connections, daemons);
  const std::string request = data_plane_request("wrap", *keys, 0);
  std::vector<LoadPlan> plans;
  std::vector<std::string> names;
  for (unsigned i = 0; i < daemons; ++i) {
    plans.push_back(LoadPlan{members[i]->service_socket(), request, connections, 1, seconds, members[i]->pid()});
    names.push_back(member_row(i + 1, daemons, connections));
  }
  for (Row& row : run_loads_at_once(plans, "fleet", names, total_row(daemons, connections))) {
    print_progress(row);
    report.add(std::move(row));
  }
}

void print_fleet_summary(const Report& report, unsigned daemons, unsigned connections, bool markdown) {
  const Row* single = report.find("fleet", single_row(connections));
  const Row* alone = report.find("fleet", alone_row(connections));
  const Row* total = report.find("fleet", total_row(daemons, connections));
  const char* us = markdown ? "µs" : "us";
  auto line = [&](const std::string& text) { std::printf(markdown ? "- %s\n" : "  %s\n", text.c_str()); };
  auto against = [&](const char* what, const Row& row) {
    char text[512];
    std::snprintf(text, sizeof text, "%s: %.0f ops/s (%.2f x single host), p99 %.0f %s (%.2f x single host)", what,
                  row.ops_per_second, row.ops_per_second / single->ops_per_second, row.latency.p99_us, us,
                  single->latency.p99_us > 0 ? row.latency.p99_us / single->latency.p99_us : 0.0);
    line(text);
  };
  std::printf(markdown ? "\n### Fleet against one host\n\n" : "\nfleet against one host (wrap, c=%u per daemon)\n", connections);
  if (!single || single->ops_per_second <= 0 || !total) return line("n/a: the fleet rows are missing (see above)");
  char text[512];
  std::snprintf(text, sizeof text, "single host (SQLite, one daemon): %.0f ops/s, p99 %.0f %s", single->ops_per_second,
                single->latency.p99_us, us);
  line(text);
  if (alone) against("one daemon on PostgreSQL", *alone);
  double lowest = 0, highest = 0;
  for (unsigned i = 1; i <= daemons; ++i) {
    const Row* member = report.find("fleet", member_row(i, daemons, connections));
    if (!member) continue;
    lowest = i == 1 ? member->ops_per_second : std::min(lowest, member->ops_per_second);
    highest = std::max(highest, member->ops_per_second);
  }
  std::snprintf(text, sizeof text, "per daemon of %u: %.0f to %.0f ops/s (%.2f to %.2f x single host)", daemons, lowest,
                highest, lowest / single->ops_per_second, highest / single->ops_per_second);
  line(text);
  against(("fleet of " + std::to_string(daemons) + " in total").c_str(), *total);
  if (auto start = report.figure("fleet.start_seconds")) {
    std::snprintf(text, sizeof text, "%u daemon%s started one after another in %.1f s", daemons, daemons == 1 ? "" : "s",
                  *start);
    line(text);
  }
  line("one machine: the daemons share its cores and the one token, so the total shows contention, "
       "not what hosts of their own would add");
}

}  // namespace custody::bench
