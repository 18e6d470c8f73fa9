#include "daemon/core/keys/usage_meter.h"

#include <algorithm>

namespace custody::core {

UsageMeter::Entry& UsageMeter::entry(const std::string& key, std::uint32_t version) {
  const std::string id = key + "#" + std::to_string(version);
  {
    std::shared_lock lock(mutex_);
    if (auto it = entries_.find(id); it != entries_.end()) return *it->second;
  }
  std::unique_lock lock(mutex_);
  auto& slot = entries_[id];
  if (!slot) slot = std::make_unique<Entry>();
  return *slot;
}

bool UsageMeter::take(Entry& e, std::uint64_t& number) {
  std::uint64_t block = e.block.load(std::memory_order_acquire);
  for (;;) {
    if ((block & kLeftMask) == 0) return false;
    const std::uint64_t next = block >> kLeftBits;
    // One number further, one fewer left.
    const std::uint64_t rest = ((next + 1) << kLeftBits) | ((block & kLeftMask) - 1);
    if (e.block.compare_exchange_weak(block, rest, std::memory_order_acq_rel, std::memory_order_acquire)) {
      number = next;
      return true;
    }
  }
}

void UsageMeter::signal_limit(Entry& e, const std::string& key) {
  if (!e.signalled.exchange(true) && on_limit_) on_limit_(key);
}

Error UsageMeter::refusal(const std::string& key, std::uint32_t version, std::uint64_t limit, std::uint64_t bound) {
  if (bound < kGcmInvocationBound - 1)
    return Error{Code::failed_precondition, "version " + std::to_string(version) + " of key '" + key +
                                                "' has reached its usage limit of " + std::to_string(limit) +
                                                " encryptions; the key is rotated automatically"};
  return Error{Code::failed_precondition,
               "version " + std::to_string(version) + " of key '" + key + "' has reached the AES-GCM invocation bound; rotate the key"};
}

Outcome<std::uint64_t> UsageMeter::count(const std::string& key, std::uint32_t version, std::uint64_t limit) {
  Entry& e = entry(key, version);
  // The GCM bound allows 2^32 - 1 encryptions, as it always has here; a usage limit may be lower.
  const std::uint64_t bound = std::min(limit, kGcmInvocationBound - 1);
  std::uint64_t number = 0;
  if (!take(e, number)) {
    if (const auto at = e.exhausted_at.load(std::memory_order_relaxed); at != 0 && bound <= at)
      return unexpected(refusal(key, version, limit, bound));
    std::lock_guard lock(e.reserving);
    // Another thread may have reserved the next block while this one waited.
    if (!take(e, number)) {
      // The encryption at hand and a block after it: one store write per block.
      const std::uint64_t wanted = 1 + std::clamp<std::uint64_t>(limit / 16, 1, 65536);
      auto granted = store_.reserve_encryptions(key, version, wanted, bound);
      if (!granted) {
        const Error& why = granted.error();
        if (why.code == Code::resource_exhausted) {
          e.exhausted_at.store(bound, std::memory_order_relaxed);
          if (bound < kGcmInvocationBound - 1) signal_limit(e, key);
          return unexpected(refusal(key, version, limit, bound));
        }
        // A version without a row is a bug here (the registry serves only stored versions), not
        // "no encryptions yet".
        return fail(why.code == Code::not_found ? Code::internal : why.code,
                    "the usage count of version " + std::to_string(version) + " of key '" + key +
                        "' cannot be reserved: " + why.message);
      }
      if (granted->count == 0 || granted->count > kLeftMask)
        return fail(Code::internal, "the store granted a block of " + std::to_string(granted->count) +
                                        " encryptions for version " + std::to_string(version) + " of key '" + key + "'");
      // This thread takes the block's first number; the rest is for everyone.
      number = granted->first;
      e.block.store(((granted->first + 1) << kLeftBits) | (granted->count - 1), std::memory_order_release);
    }
  }
  const std::uint64_t counted = number + 1;
  if (counted >= limit) signal_limit(e, key);
  return counted;
}

Outcome<std::uint64_t> UsageMeter::used(const std::string& key, std::uint32_t version) {
  auto durable = store_.encryptions(key, version);
  if (!durable)
    return fail(durable.error().code == Code::not_found ? Code::internal : durable.error().code,
                "the usage count of version " + std::to_string(version) + " of key '" + key +
                    "' cannot be read: " + durable.error().message);
  return *durable;
}

}  // namespace custody::core
