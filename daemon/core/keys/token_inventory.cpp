#include "daemon/core/keys/token_inventory.h"

#include <algorithm>

namespace custody::core {

void TokenInventory::add(ObjectRef object, bool secret_key) {
  const std::size_t index = objects_.size();
  if (!object.id.empty()) by_id_.emplace(std::string(object.id.begin(), object.id.end()), index);
  if (!object.label.empty()) by_label_.emplace(object.label, index);
  objects_.push_back({std::move(object), secret_key});
}

std::size_t TokenInventory::carriers(const ObjectRef& ref) const {
  std::vector<std::size_t> found;
  auto collect = [&](const auto& index, const std::string& value) {
    if (value.empty()) return;
    auto [first, last] = index.equal_range(value);
    for (auto it = first; it != last; ++it)
      if (std::find(found.begin(), found.end(), it->second) == found.end()) found.push_back(it->second);
  };
  collect(by_id_, std::string(ref.id.begin(), ref.id.end()));
  collect(by_label_, ref.label);
  return found.size();
}

std::vector<ObjectRef> TokenInventory::labelled(std::string_view prefix) const {
  std::vector<ObjectRef> out;
  for (const auto& e : objects_)
    if (e.secret_key && e.ref.label.starts_with(prefix)) out.push_back(e.ref);
  return out;
}

}  // namespace custody::core
