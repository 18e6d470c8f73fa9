#include "daemon/core/state/postgres/fleet_sync.h"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "daemon/core/fault_point.h"

namespace custody::core {

namespace {
// How long one wait on the feed lasts: bounds how late stop() and a due resync are noticed.
constexpr std::chrono::milliseconds kWaitSlice{200};
}  // namespace

FleetSync::FleetSync(PgSettings settings, FleetReloads reloads, std::chrono::milliseconds resync_interval)
    : settings_(std::move(settings)), reloads_(std::move(reloads)), resync_interval_(resync_interval) {}

FleetSync::~FleetSync() { stop(); }

void FleetSync::start() { thread_ = std::thread([this] { run(); }); }

void FleetSync::stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

std::optional<std::string> FleetSync::failing() const {
  if (!in_doubt_.load(std::memory_order_acquire)) return std::nullopt;
  std::lock_guard lock(fault_mutex_);
  return failing_;
}

std::chrono::milliseconds FleetSync::unsynced_for() const {
  if (!in_doubt_.load(std::memory_order_acquire)) return std::chrono::milliseconds(0);
  std::lock_guard lock(fault_mutex_);
  if (!failing_) return std::chrono::milliseconds(0);
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - synced_at_);
}

void FleetSync::note(std::optional<std::string> error) {
  std::lock_guard lock(fault_mutex_);
  if (error && error != failing_) spdlog::error("fleet state sync: {}", *error);
  if (!error && failing_) spdlog::info("fleet state sync resumed");
  failing_ = std::move(error);
  in_doubt_.store(failing_.has_value(), std::memory_order_release);
}

void FleetSync::confirm() {
  std::lock_guard lock(fault_mutex_);
  synced_at_ = std::chrono::steady_clock::now();
}

void FleetSync::confirm_unless_failing() {
  std::lock_guard lock(fault_mutex_);
  if (!failing_) synced_at_ = std::chrono::steady_clock::now();
}

bool FleetSync::reload_all() {
  fault_point("fleet-sync.reload");
  for (const auto* reload : {&reloads_.keys, &reloads_.requests, &reloads_.jobs}) {
    if (!*reload) continue;
    if (auto ok = (*reload)(); !ok) {
      note(ok.error().message);
      return false;
    }
  }
  resyncs_.fetch_add(1, std::memory_order_relaxed);
  note(std::nullopt);
  confirm();
  return true;
}

bool FleetSync::apply(const std::vector<StateChange>& changes) {
  fault_point("fleet-sync.reload");
  bool keys = false, requests = false, jobs = false;
  for (const auto& change : changes) {
    if (change.what == kResyncChange) return reload_all();
    keys = keys || change.what.starts_with("key:");
    requests = requests || change.what.starts_with("request:");
    jobs = jobs || change.what.starts_with("job:");
  }
  // One reload per kind however many changes arrived together.
  for (auto [wanted, reload] : {std::pair{keys, &reloads_.keys}, std::pair{requests, &reloads_.requests},
                                std::pair{jobs, &reloads_.jobs}}) {
    if (!wanted || !*reload) continue;
    if (auto ok = (*reload)(); !ok) {
      note(ok.error().message);
      return false;
    }
  }
  return true;
}

void FleetSync::run() {
  auto next_resync = std::chrono::steady_clock::now() + resync_interval_;
  for (;;) {
    {
      std::lock_guard lock(mutex_);
      if (stopping_) return;
    }
    if (!feed_) {
      auto feed = PgChangeFeed::open(settings_);
      if (feed) {
        feed_ = std::move(*feed);
      } else {
        note("change feed: " + feed.error().message);
        // The periodic resync still runs through the store's own connection while the feed is away.
        if (std::chrono::steady_clock::now() >= next_resync) {
          reload_all();
          next_resync = std::chrono::steady_clock::now() + resync_interval_;
        }
        std::unique_lock lock(mutex_);
        cv_.wait_for(lock, kWaitSlice, [this] { return stopping_; });
        continue;
      }
    }
    const auto now = std::chrono::steady_clock::now();
    const auto until_resync = std::chrono::duration_cast<std::chrono::milliseconds>(next_resync - now);
    auto changes = feed_->wait(std::clamp(until_resync, std::chrono::milliseconds(1), kWaitSlice));
    if (!changes) {
      note("change feed: " + changes.error().message);
      feed_.reset();  // reopened next turn, starting with a full resync
      continue;
    }
    // Nothing missed and everything heard applied: the view is current. After a failure only a
    // full resync confirms it again (what failed to load is not reloaded by a quiet feed).
    if (changes->empty() || apply(*changes)) confirm_unless_failing();
    if (std::chrono::steady_clock::now() >= next_resync) {
      reload_all();
      next_resync = std::chrono::steady_clock::now() + resync_interval_;
    }
  }
}

}  // namespace custody::core
