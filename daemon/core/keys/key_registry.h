#pragma once
// The in-memory view of every key, for O(1) lookup on the request path. Readers get an immutable
// snapshot of a key (shared_ptr<const Key>); writers replace the whole entry after the state
// store has committed the change.
#include <memory>
#include <shared_mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "daemon/core/keys/key.h"

namespace custody::core {

class KeyRegistry {
 public:
  std::shared_ptr<const Key> find(const std::string& name) const;
  std::vector<std::shared_ptr<const Key>> all() const;  // sorted by name
  void put(Key key);
  std::size_t size() const;

 private:
  mutable std::shared_mutex mutex_;
  std::unordered_map<std::string, std::shared_ptr<const Key>> keys_;
};

}  // namespace custody::core
