#pragma once
// Scheduled work a fleet must do once, not once per daemon (due destructions, automatic
// rotations, import-job expiry): run only by the daemon holding a named lease (a PostgreSQL
// session advisory lock). The server drops the lease when the holder's connection ends, so when
// that daemon dies another takes it over at its next poll.
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

#include "daemon/core/state/postgres/postgres_state_store.h"

namespace custody::core {

class LeasedWork {
 public:
  // work runs every interval (and at once on wake() or on taking the lease) while the lease is held.
  LeasedWork(PostgresStateStore& store, std::string lease, std::chrono::milliseconds interval, std::function<void()> work);
  ~LeasedWork();
  LeasedWork(const LeasedWork&) = delete;
  LeasedWork& operator=(const LeasedWork&) = delete;

  void start();
  void stop();
  void wake();
  bool holding() const;

 private:
  void run();
  PostgresStateStore& store_;
  std::string lease_;
  std::chrono::milliseconds interval_;
  std::function<void()> work_;
  std::thread thread_;
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  bool stopping_ = false;
  bool woken_ = false;
  bool holding_ = false;
};

}  // namespace custody::core
