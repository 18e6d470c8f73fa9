#include "daemon/core/keys/lifecycle_scheduler.h"

#include <unistd.h>

#include <spdlog/spdlog.h>

namespace custody::core {
namespace {

// One step of a pass. An exception (bad_alloc, a bug) must neither end the process (it would on
// this thread) nor stop the later steps: destructions and rotations fall due regardless.
template <class Fn>
void guarded(const char* step, Fn&& fn) noexcept {
  try {
    fn();
  } catch (const std::exception& e) {
    spdlog::error("lifecycle scheduler: {} failed with an exception: {}; going on", step, e.what());
  } catch (...) {
    spdlog::error("lifecycle scheduler: {} failed with an unknown exception; going on", step);
  }
}

}  // namespace

LifecycleScheduler::LifecycleScheduler(KeyAdmin& admin, KeyRegistry& registry, UsageMeter& meter, AuditLog& audit,
                                       const Clock& clock, std::chrono::milliseconds interval)
    : admin_(admin), registry_(registry), meter_(meter), audit_(audit), clock_(clock), interval_(interval) {}

LifecycleScheduler::~LifecycleScheduler() { stop(); }

void LifecycleScheduler::start() {
  thread_ = std::thread([this] {
    for (;;) {
      {
        std::unique_lock lock(mutex_);
        cv_.wait_for(lock, interval_, [&] { return stopping_ || woken_; });
        if (stopping_) return;
        woken_ = false;
      }
      guarded("a pass", [&] { run_once(); });
    }
  });
}

void LifecycleScheduler::stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void LifecycleScheduler::wake() {
  {
    std::lock_guard lock(mutex_);
    woken_ = true;
  }
  cv_.notify_all();
}

void LifecycleScheduler::audit_change(const std::string& type, const std::string& key,
                                      std::optional<std::uint32_t> version, const std::string& result,
                                      boost::json::object extra) {
  AuditEvent e;
  e.type = type;
  e.request_id = "-";
  e.client = Peer{::getuid(), ::getgid(), ::getpid()};
  e.result = result;
  e.key = key;
  e.version = version;
  e.extra = std::move(extra);
  if (!audit_.write({e})) spdlog::error("cannot audit {} of key {}", type, key);
}

void LifecycleScheduler::run_once() {
  // The audit record must be possible before the daemon changes anything by itself.
  if (!audit_.accepting()) return;
  guarded("scheduled destruction", [&] {
    auto destroyed = admin_.destroy_due();
    if (!destroyed) {
      spdlog::error("scheduled destruction failed: {}", destroyed.error().message);
      return;
    }
    for (const auto& name : *destroyed) {
      spdlog::warn("key '{}' destroyed: every token object of every version is gone", name);
      audit_change("lifecycle.destroy", name, std::nullopt, "ok");
    }
  });
  for (const auto& task : tasks_) guarded("a task", task);
  guarded("automatic rotation", [&] { rotate_due(); });
}

void LifecycleScheduler::rotate_due() {
  const std::int64_t now = unix_seconds(clock_.now());
  for (const auto& key : registry_.all()) {
    if (key->state != KeyState::enabled) continue;
    const KeyVersion* current = key->find_version(key->current_version);
    if (!current) continue;
    std::string reason;
    if (key->rotation.period_seconds && now - current->created_at >= *key->rotation.period_seconds) {
      reason = "auto-rotated:period";
    } else if (key->algorithm == Algorithm::aes_256_gcm) {
      // A count that cannot be read is not taken for zero: say so (encryptions with it are refused
      // meanwhile) and look again on the next pass.
      auto used = meter_.used(key->name, current->version);
      if (!used) {
        spdlog::error("cannot check the usage limit of '{}' v{}: {}", key->name, current->version, used.error().message);
        continue;
      }
      if (*used >= key->rotation.usage_limit) reason = "auto-rotated:usage";
    }
    if (reason.empty()) continue;
    auto rotated = admin_.rotate_key(key->name, reason);
    if (!rotated) {
      spdlog::error("automatic rotation of '{}' failed: {}", key->name, rotated.error().message);
      audit_change("lifecycle.auto-rotate", key->name, std::nullopt, code_name(rotated.error().code),
                   {{"reason", reason}});
      continue;
    }
    spdlog::info("key '{}' rotated automatically to v{} ({})", key->name, (*rotated)->current_version, reason);
    audit_change("lifecycle.auto-rotate", key->name, (*rotated)->current_version, "ok", {{"reason", reason}});
  }
}

}  // namespace custody::core
