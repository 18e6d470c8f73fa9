#pragma once
// Every change to keys: create, rotate (by hand or automatically), enable/disable, minimum
// decrypt version, scheduled destruction, and the recovery and reconciliation that keep state
// and token consistent. Changes are serialized. Changes that touch the token record an intent
// first (see StateStore), so a crash at any step is finished or undone by recover() at start.
#include <functional>
#include <mutex>

#include "daemon/core/clock.h"
#include "daemon/core/keys/key_registry.h"
#include "daemon/core/keys/key_vault.h"
#include "daemon/core/state/state_store.h"

namespace custody::core {

struct LifecycleSettings {
  std::int64_t min_destruction_wait_seconds = 7 * 86400;
};

struct ReconcileReport {
  std::vector<std::string> missing;  // "key vN: object label" whose object is gone
  std::vector<std::string> altered;  // "key vN: what differs"
  // custody-labelled token objects the state does not know, and objects the token cannot describe
  std::vector<std::string> strays;
  // "key vN: ..." destroyed in the state while token objects still carry its CKA_ID or label
  std::vector<std::string> undestroyed;
  bool clean() const { return missing.empty() && altered.empty() && strays.empty() && undestroyed.empty(); }
};

// Puts every key as the store holds it now into the registry (keys are never deleted, only
// marked destroyed, so nothing needs removing).
Outcome<void> reload_keys(StateStoreApi& store, KeyRegistry& registry);

class KeyAdmin {
 public:
  KeyAdmin(KeyRegistry& registry, StateStoreApi& store, KeyVault& vault, const Clock& clock,
           LifecycleSettings settings = {})
      : registry_(registry), store_(store), vault_(vault), clock_(clock), settings_(settings) {}

  // A fleet shares its state: another daemon may have changed the keys a moment ago, before this
  // daemon's sync brought the change here. Admin changes and their checks start from the store as
  // it is now: every change below does this first, and proposals call it (a no-op on one host).
  Outcome<void> refresh();

  // request_id: the admin request making the change, marked applied in the same transaction
  // (empty for the daemon's own changes).
  using KeyResult = Outcome<std::shared_ptr<const Key>>;
  // recovery: the key can be backed up under a trusted recovery key (CONTRACT §11); never changes.
  KeyResult create_key(const std::string& name, Algorithm algorithm, Policy policy, RotationPolicy rotation = {},
                       const std::string& request_id = {}, bool recovery = false);
  // reason: rotated | auto-rotated:period | auto-rotated:usage
  KeyResult rotate_key(const std::string& name, const std::string& reason = "rotated", const std::string& request_id = {});
  KeyResult set_enabled(const std::string& name, bool enabled, const std::string& request_id = {});
  KeyResult set_min_decrypt_version(const std::string& name, std::uint32_t version, const std::string& request_id = {});
  KeyResult set_policy(const std::string& name, Policy policy, const std::string& request_id = {});
  KeyResult schedule_destruction(const std::string& name, std::int64_t wait_seconds, const std::string& request_id = {});
  KeyResult cancel_destruction(const std::string& name, const std::string& request_id = {});

  // BYOK: unwrap(target) puts the key material into the token object target (and returns its
  // KCV); the key is created with origin "imported", or an existing imported key gains a version.
  using Unwrapper = std::function<Outcome<std::optional<std::string>>(const ObjectRef& target)>;
  // import_job is marked used in the same transaction as the new key version.
  KeyResult import_version(const std::string& name, Algorithm algorithm, const Policy& policy_if_new,
                           const Unwrapper& unwrap, const std::string& import_job);

  // Recovery (CONTRACT §11): makes key as a recovery bundle describes it (name, policy, state,
  // versions, min_decrypt_version), each live version in a fresh token object that
  // unwrap(version, target) fills; origin and attributes are checked afterwards. All or nothing:
  // a failure leaves no object behind. The key must not exist.
  using VersionUnwrapper = std::function<Outcome<void>(const KeyVersion& version, const ObjectRef& target)>;
  KeyResult restore_key(Key key, const VersionUnwrapper& unwrap);

  // Destroys every key whose destruction is due; returns their names.
  Outcome<std::vector<std::string>> destroy_due();
  // Finishes or undoes changes a crash cut short; returns what it did, for the log and audit.
  Outcome<std::vector<std::string>> recover();
  // Compares every key version with its token object, and the token's custody objects with the state.
  Outcome<ReconcileReport> reconcile();

 private:
  Outcome<KeyVersion> make_version(const std::string& name, Algorithm algorithm, std::uint32_t version,
                                   const std::string& reason, const char* intent_kind, std::int64_t& intent_id,
                                   bool recovery);
  Outcome<void> destroy_locked(const Key& key, std::int64_t intent_id);
  Outcome<void> refresh_locked();
  KeyResult publish(Key key);
  Outcome<std::shared_ptr<const Key>> existing(const std::string& name);

  std::mutex mutex_;
  KeyRegistry& registry_;
  StateStoreApi& store_;
  KeyVault& vault_;
  const Clock& clock_;
  LifecycleSettings settings_;
};

}  // namespace custody::core
