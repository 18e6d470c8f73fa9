#pragma once
// Keeps one daemon of a fleet in step with the shared PostgreSQL state: a thread waits on the
// change feed and reloads what another daemon changed (keys, admin requests, import jobs), and
// reloads everything every resync interval, so a change missed by the feed (a reconnection, a lost
// NOTIFY) is served within that interval at worst. The data plane never waits on the database.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "daemon/core/state/postgres/pg_change_feed.h"

namespace custody::core {

struct FleetReloads {
  std::function<Outcome<void>()> keys;      // reload the key registry from the store
  std::function<Outcome<void>()> requests;  // reload admin requests
  std::function<Outcome<void>()> jobs;      // reload import jobs
};

class FleetSync {
 public:
  FleetSync(PgSettings settings, FleetReloads reloads, std::chrono::milliseconds resync_interval);
  ~FleetSync();
  FleetSync(const FleetSync&) = delete;
  FleetSync& operator=(const FleetSync&) = delete;

  void start();
  void stop();
  // The latest feed or reload error, cleared by the next full resync that succeeds.
  std::optional<std::string> failing() const;
  // Full resyncs that succeeded since start (tests and metrics).
  std::uint64_t resyncs() const { return resyncs_.load(std::memory_order_relaxed); }
  // How long this daemon's view has been unconfirmed: zero while the feed and the reloads work;
  // while they fail, the time since the view was last known current (a full resync, or a feed
  // wait with nothing missed). state.max_staleness bounds how long the data plane serves it.
  std::chrono::milliseconds unsynced_for() const;

 private:
  void run();
  // Applies what the feed reported; false when a reload failed.
  bool apply(const std::vector<StateChange>& changes);
  bool reload_all();
  void note(std::optional<std::string> error);
  void confirm();
  void confirm_unless_failing();

  PgSettings settings_;
  FleetReloads reloads_;
  std::chrono::milliseconds resync_interval_;
  std::unique_ptr<PgChangeFeed> feed_;
  std::thread thread_;
  std::mutex mutex_;
  std::condition_variable cv_;
  bool stopping_ = false;
  mutable std::mutex fault_mutex_;
  std::optional<std::string> failing_;
  // failing_ has a value: read without the mutex, so the data plane's check on every request is
  // one load while the sync works.
  std::atomic<bool> in_doubt_{false};
  std::atomic<std::uint64_t> resyncs_{0};
  // When the view was last known current (steady clock); guarded by fault_mutex_.
  std::chrono::steady_clock::time_point synced_at_ = std::chrono::steady_clock::now();
};

}  // namespace custody::core
