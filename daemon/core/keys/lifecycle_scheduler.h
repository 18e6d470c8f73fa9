#pragma once
// The daemon's own key changes: destructions that fell due and automatic rotations (by period
// or by usage), each audited. Runs on its own thread every interval, and at once when a key
// reaches its usage limit. run_once() is the whole of one pass, for tests with a fake clock.
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <vector>
#include <thread>

#include "daemon/core/audit/audit_log.h"
#include "daemon/core/keys/key_admin.h"
#include "daemon/core/keys/usage_meter.h"

namespace custody::core {

class LifecycleScheduler {
 public:
  LifecycleScheduler(KeyAdmin& admin, KeyRegistry& registry, UsageMeter& meter, AuditLog& audit, const Clock& clock,
                     std::chrono::milliseconds interval);
  ~LifecycleScheduler();

  void start();
  void stop();
  void wake();
  void run_once();
  // A further task for every pass (e.g. expiring import jobs). Add before start().
  void add_task(std::function<void()> task) { tasks_.push_back(std::move(task)); }

 private:
  void rotate_due();
  void audit_change(const std::string& type, const std::string& key, std::optional<std::uint32_t> version,
                    const std::string& result, boost::json::object extra = {});

  KeyAdmin& admin_;
  KeyRegistry& registry_;
  UsageMeter& meter_;
  AuditLog& audit_;
  const Clock& clock_;
  std::chrono::milliseconds interval_;
  std::mutex mutex_;
  std::condition_variable cv_;
  bool stopping_ = false;
  bool woken_ = false;
  std::thread thread_;
  std::vector<std::function<void()>> tasks_;
};

}  // namespace custody::core
