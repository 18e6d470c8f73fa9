#include "daemon/core/keys/key_registry.h"

#include <algorithm>
#include <mutex>

namespace custody::core {

std::shared_ptr<const Key> KeyRegistry::find(const std::string& name) const {
  std::shared_lock lock(mutex_);
  auto it = keys_.find(name);
  return it == keys_.end() ? nullptr : it->second;
}

std::vector<std::shared_ptr<const Key>> KeyRegistry::all() const {
  std::vector<std::shared_ptr<const Key>> out;
  {
    std::shared_lock lock(mutex_);
    out.reserve(keys_.size());
    for (const auto& [name, key] : keys_) out.push_back(key);
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a->name < b->name; });
  return out;
}

void KeyRegistry::put(Key key) {
  auto shared = std::make_shared<const Key>(std::move(key));
  std::unique_lock lock(mutex_);
  keys_[shared->name] = std::move(shared);
}

std::size_t KeyRegistry::size() const {
  std::shared_lock lock(mutex_);
  return keys_.size();
}

}  // namespace custody::core
