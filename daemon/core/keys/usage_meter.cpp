#include "daemon/core/keys/usage_meter.h"

#include <algorithm>

namespace custody::core {

Outcome<UsageMeter::Entry*> UsageMeter::entry(const std::string& key, std::uint32_t version) {
  const std::string id = key + "#" + std::to_string(version);
  {
    std::shared_lock lock(mutex_);
    if (auto it = entries_.find(id); it != entries_.end()) return it->second.get();
  }
  std::unique_lock lock(mutex_);
  if (auto it = entries_.find(id); it != entries_.end()) return it->second.get();
  // Start from the durable reservation: what a previous run may have used. Without it the count
  // is unknown, and an unknown count is no count: nothing is cached, the caller fails.
  auto durable = store_.encryptions(key, version);
  if (!durable)
    return fail(durable.error().code == Code::not_found ? Code::internal : durable.error().code,
                "the usage count of version " + std::to_string(version) + " of key '" + key +
                    "' cannot be read: " + durable.error().message);
  auto e = std::make_unique<Entry>();
  e->used = *durable;
  e->reserved = *durable;
  return (entries_[id] = std::move(e)).get();
}

Outcome<std::uint64_t> UsageMeter::count(const std::string& key, std::uint32_t version, std::uint64_t limit) {
  auto found = entry(key, version);
  if (!found) return unexpected(found.error());
  Entry& e = **found;
  const std::uint64_t used = e.used.fetch_add(1, std::memory_order_relaxed) + 1;
  if (used >= kGcmInvocationBound)
    return fail(Code::failed_precondition, "version " + std::to_string(version) + " of key '" + key +
                                               "' has reached the AES-GCM invocation bound; rotate the key");
  if (used > e.reserved.load(std::memory_order_acquire)) {
    std::lock_guard lock(e.persist);
    if (used > e.reserved.load(std::memory_order_acquire)) {
      const std::uint64_t block = std::clamp<std::uint64_t>(limit / 16, 1, 65536);
      const std::uint64_t next = used + block;
      if (auto r = store_.set_encryptions(key, version, next); !r) {
        e.used.fetch_sub(1);
        return unexpected(r.error());
      }
      e.reserved.store(next, std::memory_order_release);
    }
  }
  if (used >= limit && !e.signalled.exchange(true) && on_limit_) on_limit_(key);
  return used;
}

Outcome<std::uint64_t> UsageMeter::used(const std::string& key, std::uint32_t version) {
  auto e = entry(key, version);
  if (!e) return unexpected(e.error());
  return (*e)->used.load(std::memory_order_relaxed);
}

}  // namespace custody::core
