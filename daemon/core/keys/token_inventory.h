#pragma once
// Every object in the token by CKA_ID and CKA_LABEL, read in one pass. Reconciliation checks each
// key version against it: one search of the token in all, instead of several per version (with
// SoftHSMv2 each search reads every object, so start-up grew with the square of the keys).
#include <cstddef>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "daemon/core/keys/key.h"

namespace custody::core {

class TokenInventory {
 public:
  void add(ObjectRef object, bool secret_key);

  // Objects carrying ref's CKA_ID or its label, each counted once (an empty id or label matches
  // nothing: it would name every object that lacks one).
  std::size_t carriers(const ObjectRef& ref) const;
  // Secret keys whose label starts with prefix.
  std::vector<ObjectRef> labelled(std::string_view prefix) const;
  std::size_t size() const { return objects_.size(); }

 private:
  struct Entry {
    ObjectRef ref;
    bool secret_key;
  };
  std::vector<Entry> objects_;
  std::unordered_multimap<std::string, std::size_t> by_id_, by_label_;
};

}  // namespace custody::core
