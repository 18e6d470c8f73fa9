#pragma once
// Key changes: create and rotate. Changes are serialized; each generates its token object first,
// then commits the state, then publishes it to the registry. A crash between the two leaves a
// labelled token object that reconciliation reports (never a state row without its object).
#include <mutex>

#include "daemon/core/clock.h"
#include "daemon/core/key_registry.h"
#include "daemon/core/key_vault.h"
#include "daemon/core/state_store.h"

namespace custody::core {

class KeyAdmin {
 public:
  KeyAdmin(KeyRegistry& registry, StateStore& store, KeyVault& vault, const Clock& clock)
      : registry_(registry), store_(store), vault_(vault), clock_(clock) {}

  Outcome<std::shared_ptr<const Key>> create_key(const std::string& name, Algorithm algorithm, Policy policy);
  Outcome<std::shared_ptr<const Key>> rotate_key(const std::string& name);

 private:
  Outcome<KeyVersion> new_version(const std::string& name, Algorithm algorithm, std::uint32_t version);

  std::mutex mutex_;
  KeyRegistry& registry_;
  StateStore& store_;
  KeyVault& vault_;
  const Clock& clock_;
};

}  // namespace custody::core
