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
  // An object the token lists but whose CKA_ID or CKA_LABEL it will not return: a store torn by a
  // crash in the middle of a write (SoftHSMv2 writes object files in place), or another
  // application's object. It names no key, so it is reported, never used.
  void add_unreadable(std::string what) { unreadable_.push_back(std::move(what)); }
  const std::vector<std::string>& unreadable() const { return unreadable_; }

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
  std::vector<std::string> unreadable_;
  std::unordered_multimap<std::string, std::size_t> by_id_, by_label_;
};

}  // namespace custody::core
