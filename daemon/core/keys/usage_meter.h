#pragma once
// Counts encryptions per aes-256-gcm key version. The durable count is a reservation written
// before the encryptions it covers, in blocks, so a crash can only make the count too high,
// never too low, and the request path writes to the database once per block.
// Fail closed: a version's count starts from the durable one; if that cannot be read the
// encryption is refused (and the read is tried again on the next one), never counted from 0.
#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <unordered_map>

#include "daemon/core/state/state_store.h"

namespace custody::core {

// SP 800-38D: at most 2^32 invocations of GCM with random 96-bit IVs under one key.
inline constexpr std::uint64_t kGcmInvocationBound = std::uint64_t{1} << 32;

class UsageMeter {
 public:
  explicit UsageMeter(StateStoreApi& store) : store_(store) {}

  // Called when a version's count reaches its key's usage limit (once per version).
  void on_limit(std::function<void(const std::string& key)> callback) { on_limit_ = std::move(callback); }

  // Counts one encryption before it happens; fails (closed) if the reservation cannot be stored
  // or the version has reached the GCM bound.
  Outcome<std::uint64_t> count(const std::string& key, std::uint32_t version, std::uint64_t limit);
  // Encryptions counted so far, or why the durable count cannot be read.
  Outcome<std::uint64_t> used(const std::string& key, std::uint32_t version);

 private:
  struct Entry {
    std::atomic<std::uint64_t> used{0};
    std::atomic<std::uint64_t> reserved{0};
    std::atomic<bool> signalled{false};
    std::mutex persist;
  };
  Outcome<Entry*> entry(const std::string& key, std::uint32_t version);

  StateStoreApi& store_;
  std::function<void(const std::string&)> on_limit_;
  std::shared_mutex mutex_;
  std::unordered_map<std::string, std::unique_ptr<Entry>> entries_;
};

}  // namespace custody::core
