#include "bench/daemon_load.h"

#include <algorithm>
#include <barrier>
#include <chrono>
#include <optional>
#include <thread>
#include <vector>

#include "bench/http_connection.h"
#include "bench/proc_stats.h"

namespace custody::bench {

namespace {

using Clock = std::chrono::steady_clock;

struct ConnectionTally {
  std::vector<double> latencies_us;  // requests answered in time, all 200 and error-free
  std::uint64_t answered_in_window = 0;  // ok or not
  std::uint64_t failed_requests = 0, failed_items = 0;
  std::string first_error;
};

// A batch answers 200 with an {"error": …} per failed item; base64 and the success fields never
// contain the quoted word, so finding it is enough to count a failed item.
std::uint64_t failed_batch_items(std::string_view body) {
  std::uint64_t n = 0;
  for (std::size_t pos = body.find("\"error\""); pos != std::string_view::npos; pos = body.find("\"error\"", pos + 7)) ++n;
  return n;
}

// One request: true when it answered 200 with no failed item.
bool one_request(HttpConnection& connection, const LoadPlan& plan, ConnectionTally& tally) {
  auto status = connection.round_trip(plan.request);
  if (!status || *status != 200) {
    ++tally.failed_requests;
    if (tally.first_error.empty())
      tally.first_error = status ? "HTTP " + std::to_string(*status) + ": " + std::string(connection.body().substr(0, 200))
                                 : status.error();
    return false;
  }
  if (plan.items_per_request > 1) {
    if (const auto failed = failed_batch_items(connection.body())) {
      tally.failed_items += failed;
      if (tally.first_error.empty()) tally.first_error = "batch item: " + std::string(connection.body().substr(0, 200));
      return false;
    }
  }
  return true;
}

// One plan's result: every connection's tally, and the daemon's context switches over the window.
struct PlanTally {
  std::vector<ConnectionTally> connections;
  std::optional<std::uint64_t> switches_before, switches_after;
};

// Runs the plans' connections together over one window. Every connection is open and warm
// before the clock starts. The counted window begins after a warm-up, once every connection has a
// request in flight, so that a row of slow batches is not short of the answers its first round
// trip would take; requests still in flight at the window's end are not counted either.
std::vector<PlanTally> run_plans(const std::vector<LoadPlan>& plans, double seconds) {
  std::vector<PlanTally> tallies(plans.size());
  std::size_t connections = 0;
  for (std::size_t p = 0; p < plans.size(); ++p) {
    tallies[p].connections.resize(plans[p].connections);
    connections += plans[p].connections;
  }
  const auto window = std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
  const auto warm_up = std::min<Clock::duration>(window / 4, std::chrono::seconds(1));
  Clock::time_point window_start, window_end;
  std::barrier ready(static_cast<std::ptrdiff_t>(connections) + 1, [&]() noexcept {
    window_start = Clock::now() + warm_up;
    window_end = window_start + window;
  });
  std::vector<std::thread> threads;
  threads.reserve(connections);
  for (std::size_t p = 0; p < plans.size(); ++p) {
    for (unsigned c = 0; c < plans[p].connections; ++c) {
      threads.emplace_back([&, p, c] {
        const LoadPlan& plan = plans[p];
        ConnectionTally& tally = tallies[p].connections[c];
        tally.latencies_us.reserve(1 << 16);
        HttpConnection connection(plan.socket_path);
        // Every failure counts, warm-up included: a row with errors says so.
        one_request(connection, plan, tally);
        ready.arrive_and_wait();
        for (Clock::time_point now = Clock::now(); now < window_end;) {
          const bool ok = one_request(connection, plan, tally);
          const Clock::time_point done = Clock::now();
          if (done >= window_start && done <= window_end) {
            ++tally.answered_in_window;
            if (ok) tally.latencies_us.push_back(std::chrono::duration<double, std::micro>(done - now).count());
          }
          now = done;
        }
      });
    }
  }
  // Each daemon's context switches over exactly the window.
  ready.arrive_and_wait();
  std::this_thread::sleep_until(window_start);
  for (std::size_t p = 0; p < plans.size(); ++p) tallies[p].switches_before = context_switches(plans[p].daemon_pid);
  std::this_thread::sleep_until(window_end);
  for (std::size_t p = 0; p < plans.size(); ++p) tallies[p].switches_after = context_switches(plans[p].daemon_pid);
  for (auto& t : threads) t.join();
  return tallies;
}

Row make_row(const LoadPlan& plan, const PlanTally& tally, std::string section, std::string name) {
  Row row{std::move(section), std::move(name)};
  std::vector<double> all;
  std::uint64_t answered = 0, ok_in_window = 0;
  std::string first_error;
  for (auto& t : tally.connections) {
    all.insert(all.end(), t.latencies_us.begin(), t.latencies_us.end());
    ok_in_window += t.latencies_us.size();
    answered += t.answered_in_window;
    row.errors += plan.items_per_request > 1 ? t.failed_items + t.failed_requests * plan.items_per_request : t.failed_requests;
    if (first_error.empty()) first_error = t.first_error;
  }
  row.latency = summarize(all);
  row.ops_per_second = static_cast<double>(ok_in_window) * plan.items_per_request / plan.seconds;
  if (tally.switches_before && tally.switches_after && answered > 0)
    row.context_switches_per_request =
        static_cast<double>(*tally.switches_after - *tally.switches_before) / static_cast<double>(answered);
  row.rss_mib = resident_mib(plan.daemon_pid);
  if (row.errors) row.note = "first error: " + first_error;
  return row;
}

}  // namespace

Row run_load(const LoadPlan& plan, std::string section, std::string name) {
  const auto tallies = run_plans({plan}, plan.seconds);
  return make_row(plan, tallies.front(), std::move(section), std::move(name));
}

std::vector<Row> run_loads_at_once(const std::vector<LoadPlan>& plans, const std::string& section,
                                   const std::vector<std::string>& names, const std::string& total_name) {
  const double seconds = plans.empty() ? 0 : plans.front().seconds;
  const auto tallies = run_plans(plans, seconds);
  std::vector<Row> rows;
  Row total{section, total_name};
  std::vector<double> all;
  for (std::size_t p = 0; p < plans.size(); ++p) {
    rows.push_back(make_row(plans[p], tallies[p], section, p < names.size() ? names[p] : "plan " + std::to_string(p)));
    total.ops_per_second += rows.back().ops_per_second;
    total.errors += rows.back().errors;
    if (total.note.empty() && !rows.back().note.empty()) total.note = rows.back().name + ": " + rows.back().note;
    for (const auto& c : tallies[p].connections) all.insert(all.end(), c.latencies_us.begin(), c.latencies_us.end());
  }
  total.latency = summarize(all);
  rows.push_back(std::move(total));
  return rows;
}

}  // namespace custody::bench
