#include "daemon/core/state/postgres/leased_work.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <exception>
#include <utility>

namespace custody::core {

namespace {
// How often a daemon without the lease tries to take it: bounds the takeover after a holder dies.
constexpr std::chrono::milliseconds kLeasePoll{1000};
}  // namespace

LeasedWork::LeasedWork(PostgresStateStore& store, std::string lease, std::chrono::milliseconds interval,
                       std::function<void()> work)
    : store_(store), lease_(std::move(lease)), interval_(interval), work_(std::move(work)) {}

LeasedWork::~LeasedWork() { stop(); }

void LeasedWork::start() { thread_ = std::thread([this] { run(); }); }

void LeasedWork::stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void LeasedWork::wake() {
  {
    std::lock_guard lock(mutex_);
    woken_ = true;
  }
  cv_.notify_all();
}

bool LeasedWork::holding() const {
  std::lock_guard lock(mutex_);
  return holding_;
}

void LeasedWork::run() {
  const auto poll = std::min(interval_, kLeasePoll);
  auto last_run = std::chrono::steady_clock::time_point{};
  bool first = true;
  for (;;) {
    bool woken = false;
    {
      std::unique_lock lock(mutex_);
      if (!first) cv_.wait_for(lock, poll, [this] { return stopping_ || woken_; });
      if (stopping_) return;
      woken = std::exchange(woken_, false);
    }
    first = false;
    auto taken = store_.try_lease(lease_);
    const bool holding = taken && *taken;
    bool newly = false;
    {
      std::lock_guard lock(mutex_);
      newly = holding && !holding_;
      if (holding_ && !holding) spdlog::warn("lost the lease '{}': another daemon runs its scheduled work", lease_);
      holding_ = holding;
    }
    if (!taken) spdlog::error("lease '{}': {}", lease_, taken.error().message);
    if (newly) spdlog::info("took the lease '{}': this daemon runs the fleet's scheduled work", lease_);
    if (!holding) continue;
    const auto now = std::chrono::steady_clock::now();
    if (!newly && !woken && now - last_run < interval_) continue;
    last_run = now;
    try {
      work_();
    } catch (const std::exception& e) {
      spdlog::error("scheduled work under lease '{}' failed: {}", lease_, e.what());
    }
  }
}

}  // namespace custody::core
