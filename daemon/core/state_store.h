#pragma once
// Durable state in SQLite (WAL, synchronous=FULL): keys, versions, metadata. A change is
// acknowledged only after its transaction commits.
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "daemon/core/key.h"

struct sqlite3;

namespace custody::core {

class StateStore {
 public:
  static Expected<std::unique_ptr<StateStore>, std::string> open(const std::string& path);
  ~StateStore();
  StateStore(const StateStore&) = delete;
  StateStore& operator=(const StateStore&) = delete;

  Outcome<std::vector<Key>> load_keys();
  Outcome<void> insert_key(const Key& key);
  // Adds a version and makes it current, in one transaction.
  Outcome<void> add_version(const std::string& key_name, const KeyVersion& version);

 private:
  explicit StateStore(sqlite3* db) : db_(db) {}
  Outcome<void> exec(const char* sql);
  std::mutex mutex_;
  sqlite3* db_;
};

}  // namespace custody::core
