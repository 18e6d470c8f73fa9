#include "bench/daemon_load.h"

#include <algorithm>
#include <barrier>
#include <chrono>
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

}  // namespace

Row run_load(const LoadPlan& plan, std::string section, std::string name) {
  std::vector<ConnectionTally> tallies(plan.connections);
  // Every connection is open and warm before the clock starts. The counted window begins after
  // a warm-up, once every connection has a request in flight, so that a row of slow batches is
  // not short of the answers its first round trip would take; requests still in flight at the
  // window's end are not counted either.
  const auto window = std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(plan.seconds));
  const auto warm_up = std::min<Clock::duration>(window / 4, std::chrono::seconds(1));
  Clock::time_point window_start, window_end;
  std::barrier ready(static_cast<std::ptrdiff_t>(plan.connections) + 1, [&]() noexcept {
    window_start = Clock::now() + warm_up;
    window_end = window_start + window;
  });
  std::vector<std::thread> threads;
  threads.reserve(plan.connections);
  for (unsigned c = 0; c < plan.connections; ++c) {
    threads.emplace_back([&, c] {
      ConnectionTally& tally = tallies[c];
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
  // The daemon's context switches over exactly the window.
  ready.arrive_and_wait();
  std::this_thread::sleep_until(window_start);
  const auto switches_before = context_switches(plan.daemon_pid);
  std::this_thread::sleep_until(window_end);
  const auto switches_after = context_switches(plan.daemon_pid);
  for (auto& t : threads) t.join();

  Row row{std::move(section), std::move(name)};
  std::vector<double> all;
  std::uint64_t answered = 0, ok_in_window = 0;
  std::string first_error;
  for (auto& t : tallies) {
    all.insert(all.end(), t.latencies_us.begin(), t.latencies_us.end());
    ok_in_window += t.latencies_us.size();
    answered += t.answered_in_window;
    row.errors += plan.items_per_request > 1 ? t.failed_items + t.failed_requests * plan.items_per_request : t.failed_requests;
    if (first_error.empty()) first_error = t.first_error;
  }
  row.latency = summarize(all);
  row.ops_per_second = static_cast<double>(ok_in_window) * plan.items_per_request / plan.seconds;
  if (switches_before && switches_after && answered > 0)
    row.context_switches_per_request = static_cast<double>(*switches_after - *switches_before) / static_cast<double>(answered);
  row.rss_mib = resident_mib(plan.daemon_pid);
  if (row.errors) row.note = "first error: " + first_error;
  return row;
}

}  // namespace custody::bench
