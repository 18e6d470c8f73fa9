#pragma once
// Counts encryptions per aes-256-gcm key version, for the whole fleet of daemons sharing the state.
// Each encryption takes the next number of the version's count from a block this daemon reserved
// in the store before it: a reservation is durable before the encryptions it covers (a crash can
// only make the count too high, never too low) and is taken atomically for the fleet, never past
// the version's bound (its usage limit, at most the GCM invocation bound), so the bound holds
// however many daemons encrypt. The request path writes to the store once per block; between
// blocks an encryption costs one compare-and-swap.
// Fail closed: a block that cannot be reserved refuses the encryption (and the next one tries
// again), never counts from 0.
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

  // Called when a version's count reaches its key's usage limit, fleet-wide (once per version and
  // daemon: by the daemon taking the last number, and by each daemon refused for it).
  void on_limit(std::function<void(const std::string& key)> callback) { on_limit_ = std::move(callback); }

  // Counts one encryption before it happens and returns its number in the fleet's count (1-based).
  // failed_precondition when the version has reached its usage limit or the GCM bound; the
  // store's error when no block can be reserved.
  Outcome<std::uint64_t> count(const std::string& key, std::uint32_t version, std::uint64_t limit);
  // The fleet's durable count (every block reserved so far, by any daemon), or why it cannot be read.
  Outcome<std::uint64_t> used(const std::string& key, std::uint32_t version);

 private:
  // The unused part of this daemon's latest block, in one word so that taking a number is one
  // compare-and-swap: the next number (high bits) and how many are left (low kLeftBits bits).
  static constexpr unsigned kLeftBits = 20;
  static constexpr std::uint64_t kLeftMask = (std::uint64_t{1} << kLeftBits) - 1;
  struct Entry {
    std::atomic<std::uint64_t> block{0};
    std::atomic<bool> signalled{false};
    // The bound the store said the count has reached (0: none yet): the count never goes down,
    // so an encryption under that bound or a lower one is refused without asking again.
    std::atomic<std::uint64_t> exhausted_at{0};
    std::mutex reserving;
  };
  Entry& entry(const std::string& key, std::uint32_t version);
  // Takes the next number of the entry's block; false when the block is used up.
  static bool take(Entry& e, std::uint64_t& number);
  void signal_limit(Entry& e, const std::string& key);
  static Error refusal(const std::string& key, std::uint32_t version, std::uint64_t limit, std::uint64_t bound);

  StateStoreApi& store_;
  std::function<void(const std::string&)> on_limit_;
  std::shared_mutex mutex_;
  std::unordered_map<std::string, std::unique_ptr<Entry>> entries_;
};

}  // namespace custody::core
