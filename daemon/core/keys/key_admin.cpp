#include "daemon/core/keys/key_admin.h"

#include <openssl/rand.h>

#include <set>

#include <spdlog/spdlog.h>

#include "common/hex.h"
#include "daemon/core/fault_point.h"

namespace custody::core {
namespace {

std::string describe(const Key& key, const KeyVersion& v) {
  return key.name + " v" + std::to_string(v.version) + " (" + v.object.label + ")";
}

}  // namespace

Outcome<void> reload_keys(StateStoreApi& store, KeyRegistry& registry) {
  auto loaded = store.load_keys();
  if (!loaded) return unexpected(loaded.error());
  for (auto& key : *loaded) registry.put(std::move(key));
  return {};
}

Outcome<void> KeyAdmin::refresh() {
  std::lock_guard lock(mutex_);
  return refresh_locked();
}

Outcome<void> KeyAdmin::refresh_locked() {
  if (!store_.shared()) return {};
  return reload_keys(store_, registry_);
}

Outcome<std::shared_ptr<const Key>> KeyAdmin::existing(const std::string& name) {
  auto key = registry_.find(name);
  if (!key) return fail(Code::not_found, "no key named '" + name + "'");
  return key;
}

KeyAdmin::KeyResult KeyAdmin::publish(Key key) {
  const std::string name = key.name;
  registry_.put(std::move(key));
  return registry_.find(name);
}

Outcome<KeyVersion> KeyAdmin::make_version(const std::string& name, Algorithm algorithm, std::uint32_t version,
                                           const std::string& reason, const char* intent_kind, std::int64_t& intent_id,
                                           bool recovery) {
  KeyVersion v;
  v.version = version;
  v.reason = reason;
  v.created_at = unix_seconds(clock_.now());
  v.object.id.resize(16);
  if (RAND_bytes(v.object.id.data(), 16) != 1) return fail(Code::internal, "no randomness for the object id");
  v.object.label = object_label(name, version);
  auto intent = store_.begin_intent(Intent{0, intent_kind, name, version, v.object, v.created_at});
  if (!intent) return unexpected(intent.error());
  intent_id = *intent;
  fault_point((std::string(intent_kind) + ".after-intent").c_str());
  if (auto r = vault_.generate(algorithm, v.object, recovery); !r) {
    (void)store_.drop_intent(intent_id);
    return unexpected(r.error());
  }
  fault_point((std::string(intent_kind) + ".after-generate").c_str());
  // CONTRACT §8: an hmac-sha256 key's KCV is HMAC-SHA256(K, 16 zero bytes)[0..3]; a generated AES
  // key has none.
  if (algorithm == Algorithm::hmac_sha256) {
    const std::uint8_t zeros[16] = {};
    auto mac = vault_.hmac_sha256(v.object, zeros);
    if (!mac) return unexpected(mac.error());
    v.kcv = hex_upper(std::span(mac->data(), 3));
  }
  return v;
}

KeyAdmin::KeyResult KeyAdmin::create_key(const std::string& name, Algorithm algorithm, Policy policy,
                                         RotationPolicy rotation, const std::string& request_id, bool recovery) {
  std::lock_guard lock(mutex_);
  if (auto fresh = refresh_locked(); !fresh) return unexpected(fresh.error());
  if (!valid_key_name(name)) return fail(Code::invalid_argument, "key names match ^[a-z0-9][a-z0-9._-]{0,62}$");
  if (registry_.find(name)) return fail(Code::failed_precondition, "a key named '" + name + "' already exists");
  std::int64_t intent = 0;
  auto v = make_version(name, algorithm, 1, "created", "create-key", intent, recovery);
  if (!v) return unexpected(v.error());
  Key key;
  key.name = name;
  key.algorithm = algorithm;
  key.current_version = 1;
  key.created_at = v->created_at;
  key.policy = std::move(policy);
  key.rotation = rotation;
  key.recovery = recovery;
  key.versions.push_back(std::move(*v));
  if (auto r = store_.insert_key(key, intent, request_id); !r) return unexpected(r.error());
  return publish(std::move(key));
}

KeyAdmin::KeyResult KeyAdmin::rotate_key(const std::string& name, const std::string& reason,
                                         const std::string& request_id) {
  std::lock_guard lock(mutex_);
  if (auto fresh = refresh_locked(); !fresh) return unexpected(fresh.error());
  auto current = existing(name);
  if (!current) return current;
  if ((*current)->state != KeyState::enabled)
    return fail(Code::failed_precondition,
                "key '" + name + "' is " + key_state_name((*current)->state) + "; only enabled keys rotate");
  std::int64_t intent = 0;
  auto v = make_version(name, (*current)->algorithm, (*current)->current_version + 1, reason, "rotate-key", intent,
                        (*current)->recovery);
  if (!v) return unexpected(v.error());
  if (auto r = store_.add_version(name, *v, intent, request_id); !r) return unexpected(r.error());
  Key next = **current;
  next.current_version = v->version;
  next.versions.push_back(std::move(*v));
  return publish(std::move(next));
}

KeyAdmin::KeyResult KeyAdmin::import_version(const std::string& name, Algorithm algorithm, const Policy& policy_if_new,
                                             const Unwrapper& unwrap, const std::string& import_job) {
  std::lock_guard lock(mutex_);
  if (auto fresh = refresh_locked(); !fresh) return unexpected(fresh.error());
  auto current = registry_.find(name);
  if (current) {
    bool imported = true;
    for (const auto& v : current->versions) imported = imported && v.origin == "imported";
    if (!imported) return fail(Code::failed_precondition, "key '" + name + "' was generated in the token; only imported keys take imported versions");
    if (current->algorithm != algorithm)
      return fail(Code::failed_precondition, "key '" + name + "' is " + algorithm_name(current->algorithm));
    if (current->state != KeyState::enabled)
      return fail(Code::failed_precondition, "key '" + name + "' is " + key_state_name(current->state));
  }
  KeyVersion v;
  v.version = current ? current->current_version + 1 : 1;
  v.origin = "imported";
  v.reason = "imported";
  v.created_at = unix_seconds(clock_.now());
  v.object.id.resize(16);
  if (RAND_bytes(v.object.id.data(), 16) != 1) return fail(Code::internal, "no randomness for the object id");
  v.object.label = object_label(name, v.version);
  auto intent = store_.begin_intent(Intent{0, "import-key", name, v.version, v.object, v.created_at});
  if (!intent) return unexpected(intent.error());
  auto kcv = unwrap(v.object);
  if (!kcv) {
    (void)vault_.destroy(v.object);
    (void)store_.drop_intent(*intent);
    return unexpected(kcv.error());
  }
  if (auto ok = vault_.verify(algorithm, v.object, false); !ok) {
    (void)vault_.destroy(v.object);
    (void)store_.drop_intent(*intent);
    return unexpected(ok.error());
  }
  v.kcv = *kcv;
  if (current) {
    if (auto r = store_.add_version(name, v, *intent, {}, import_job); !r) {
      (void)vault_.destroy(v.object);
      (void)store_.drop_intent(*intent);
      return unexpected(r.error());
    }
    Key next = *current;
    next.current_version = v.version;
    next.versions.push_back(std::move(v));
    return publish(std::move(next));
  }
  Key key;
  key.name = name;
  key.algorithm = algorithm;
  key.current_version = 1;
  key.created_at = v.created_at;
  key.policy = policy_if_new;
  key.versions.push_back(std::move(v));
  if (auto r = store_.insert_key(key, *intent, {}, import_job); !r) {
    (void)vault_.destroy(key.versions[0].object);
    (void)store_.drop_intent(*intent);
    return unexpected(r.error());
  }
  return publish(std::move(key));
}

KeyAdmin::KeyResult KeyAdmin::restore_key(Key key, const VersionUnwrapper& unwrap) {
  std::lock_guard lock(mutex_);
  if (auto fresh = refresh_locked(); !fresh) return unexpected(fresh.error());
  if (!valid_key_name(key.name)) return fail(Code::invalid_argument, "key names match ^[a-z0-9][a-z0-9._-]{0,62}$");
  if (registry_.find(key.name)) return fail(Code::failed_precondition, "a key named '" + key.name + "' already exists");
  std::vector<std::int64_t> intents;
  std::vector<ObjectRef> made;
  // Nothing half restored may stay: every object made so far goes, with its intent.
  auto undo = [&](const Error& why) -> KeyResult {
    for (const auto& obj : made) (void)vault_.destroy(obj);
    for (auto id : intents) (void)store_.drop_intent(id);
    return unexpected(why);
  };
  for (auto& v : key.versions) {
    v.object.id.resize(16);
    if (RAND_bytes(v.object.id.data(), 16) != 1) return undo({Code::internal, "no randomness for the object id"});
    v.object.label = object_label(key.name, v.version);
    if (v.state == "destroyed") continue;  // shredded at the source: there is nothing to restore
    auto intent = store_.begin_intent(Intent{0, "restore-key", key.name, v.version, v.object, unix_seconds(clock_.now())});
    if (!intent) return undo(intent.error());
    intents.push_back(*intent);
    made.push_back(v.object);
    if (auto r = unwrap(v, v.object); !r) return undo(r.error());
    if (auto ok = vault_.verify(key.algorithm, v.object, false, key.recovery); !ok) return undo(ok.error());
  }
  if (auto r = store_.insert_restored_key(key, intents); !r) return undo(r.error());
  return publish(std::move(key));
}

KeyAdmin::KeyResult KeyAdmin::set_enabled(const std::string& name, bool enabled, const std::string& request_id) {
  std::lock_guard lock(mutex_);
  if (auto fresh = refresh_locked(); !fresh) return unexpected(fresh.error());
  auto current = existing(name);
  if (!current) return current;
  const KeyState from = (*current)->state;
  if (from != KeyState::enabled && from != KeyState::disabled)
    return fail(Code::failed_precondition, "key '" + name + "' is " + key_state_name(from) +
                                               (from == KeyState::pending_destruction ? "; cancel the destruction first" : ""));
  const KeyState to = enabled ? KeyState::enabled : KeyState::disabled;
  if (auto r = store_.set_state(name, to, std::nullopt, request_id); !r) return unexpected(r.error());
  Key next = **current;
  next.state = to;
  return publish(std::move(next));
}

KeyAdmin::KeyResult KeyAdmin::set_min_decrypt_version(const std::string& name, std::uint32_t version,
                                                      const std::string& request_id) {
  std::lock_guard lock(mutex_);
  if (auto fresh = refresh_locked(); !fresh) return unexpected(fresh.error());
  auto current = existing(name);
  if (!current) return current;
  const Key& k = **current;
  if (version < k.min_decrypt_version || version > k.current_version)
    return fail(Code::failed_precondition, "the minimum decrypt version of '" + name + "' can go from " +
                                               std::to_string(k.min_decrypt_version) + " up to the current version " +
                                               std::to_string(k.current_version) + ", not to " + std::to_string(version));
  if (auto r = store_.set_min_decrypt_version(name, version, request_id); !r) return unexpected(r.error());
  Key next = k;
  next.min_decrypt_version = version;
  return publish(std::move(next));
}

KeyAdmin::KeyResult KeyAdmin::set_policy(const std::string& name, Policy policy, const std::string& request_id) {
  std::lock_guard lock(mutex_);
  if (auto fresh = refresh_locked(); !fresh) return unexpected(fresh.error());
  auto current = existing(name);
  if (!current) return current;
  if ((*current)->state == KeyState::destroyed) return fail(Code::failed_precondition, "key '" + name + "' is destroyed");
  if (auto r = store_.set_policy(name, policy, request_id); !r) return unexpected(r.error());
  Key next = **current;
  next.policy = std::move(policy);
  return publish(std::move(next));
}

KeyAdmin::KeyResult KeyAdmin::schedule_destruction(const std::string& name, std::int64_t wait_seconds,
                                                   const std::string& request_id) {
  std::lock_guard lock(mutex_);
  if (auto fresh = refresh_locked(); !fresh) return unexpected(fresh.error());
  auto current = existing(name);
  if (!current) return current;
  const KeyState from = (*current)->state;
  if (from != KeyState::enabled && from != KeyState::disabled)
    return fail(Code::failed_precondition, "key '" + name + "' is already " + key_state_name(from));
  if (wait_seconds < settings_.min_destruction_wait_seconds)
    return fail(Code::invalid_argument, "wait_seconds must be at least " +
                                            std::to_string(settings_.min_destruction_wait_seconds) +
                                            " (lifecycle.min_destruction_wait)");
  const std::int64_t at = unix_seconds(clock_.now()) + wait_seconds;
  if (auto r = store_.set_state(name, KeyState::pending_destruction, at, request_id); !r) return unexpected(r.error());
  Key next = **current;
  next.state = KeyState::pending_destruction;
  next.destroy_at = at;
  return publish(std::move(next));
}

KeyAdmin::KeyResult KeyAdmin::cancel_destruction(const std::string& name, const std::string& request_id) {
  std::lock_guard lock(mutex_);
  if (auto fresh = refresh_locked(); !fresh) return unexpected(fresh.error());
  auto current = existing(name);
  if (!current) return current;
  if ((*current)->state != KeyState::pending_destruction)
    return fail(Code::failed_precondition, "key '" + name + "' is " + key_state_name((*current)->state) +
                                               ", not scheduled for destruction");
  // Like AWS KMS: a rescued key comes back disabled, to be enabled on purpose.
  if (auto r = store_.set_state(name, KeyState::disabled, std::nullopt, request_id); !r) return unexpected(r.error());
  Key next = **current;
  next.state = KeyState::disabled;
  next.destroy_at.reset();
  return publish(std::move(next));
}

Outcome<void> KeyAdmin::destroy_locked(const Key& key, std::int64_t intent_id) {
  // Only the versions destroyed here are marked destroyed: the store refuses if it holds another.
  std::vector<std::uint32_t> destroyed;
  for (const auto& v : key.versions) {
    if (auto r = vault_.destroy(v.object); !r)
      return fail(r.error().code, "key '" + key.name + "' is not destroyed: " + r.error().message);
    if (destroyed.empty()) fault_point("destroy-key.after-first-object");
    destroyed.push_back(v.version);
  }
  if (auto r = store_.mark_destroyed(key.name, destroyed, intent_id); !r) return r;
  Key next = key;
  next.state = KeyState::destroyed;
  next.destroy_at.reset();
  for (auto& v : next.versions) v.state = "destroyed";
  (void)publish(std::move(next));
  return {};
}

Outcome<std::vector<std::string>> KeyAdmin::destroy_due() {
  std::lock_guard lock(mutex_);
  if (auto fresh = refresh_locked(); !fresh) return unexpected(fresh.error());
  std::vector<std::string> destroyed;
  // A failure ends the pass, but the keys it destroyed before are still returned: their
  // destruction happened, and the caller audits each name it gets back.
  auto stop = [&destroyed](const Error& error) -> Outcome<std::vector<std::string>> {
    if (destroyed.empty()) return unexpected(error);
    spdlog::error("scheduled destruction stopped after {} key(s): {}", destroyed.size(), error.message);
    return destroyed;
  };
  const std::int64_t now = unix_seconds(clock_.now());
  for (const auto& key : registry_.all()) {
    if (key->state != KeyState::pending_destruction || !key->destroy_at || *key->destroy_at > now) continue;
    auto intent = store_.begin_intent(Intent{0, "destroy-key", key->name, 0, {}, now});
    if (!intent) return stop(intent.error());
    fault_point("destroy-key.after-intent");
    if (auto r = destroy_locked(*key, *intent); !r) {
      // Not destroyed, and not called destroyed: the key stays pending and is tried again on the
      // next run. The intent goes, so that a copy the token will not destroy cannot block start.
      spdlog::error("key '{}' is due for destruction but is NOT destroyed: {}", key->name, r.error().message);
      if (auto d = store_.drop_intent(*intent); !d) return stop(d.error());
      if (r.error().code == Code::unavailable) return stop(r.error());
      continue;
    }
    destroyed.push_back(key->name);
  }
  return destroyed;
}

Outcome<std::vector<std::string>> KeyAdmin::recover() {
  std::lock_guard lock(mutex_);
  auto intents = store_.pending_intents();
  if (!intents) return unexpected(intents.error());
  std::vector<std::string> done;
  for (const auto& intent : *intents) {
    if (intent.kind == "destroy-key") {
      // Destruction was decided and may be half done: finish it.
      auto key = registry_.find(intent.key_name);
      if (!key) {
        (void)store_.drop_intent(intent.id);
        continue;
      }
      if (auto r = destroy_locked(*key, intent.id); !r) {
        if (r.error().code == Code::unavailable) return unexpected(r.error());
        // The token keeps an object it will not destroy: say so, and keep the key pending.
        if (auto d = store_.drop_intent(intent.id); !d) return unexpected(d.error());
        done.push_back("could NOT finish destroying key '" + intent.key_name + "'; it stays pending destruction: " +
                       r.error().message);
        continue;
      }
      done.push_back("finished destroying key '" + intent.key_name + "'");
    } else {
      // A create or rotate that never committed was never acknowledged: remove its object.
      if (auto r = vault_.destroy(intent.object); !r) return unexpected(r.error());
      if (auto r = store_.drop_intent(intent.id); !r) return unexpected(r.error());
      done.push_back("rolled back " + intent.kind + " of '" + intent.key_name + "' v" + std::to_string(intent.version) +
                     " (removed " + intent.object.label + " if it existed)");
    }
  }
  return done;
}

Outcome<ReconcileReport> KeyAdmin::reconcile() {
  std::lock_guard lock(mutex_);
  if (auto fresh = refresh_locked(); !fresh) return unexpected(fresh.error());
  ReconcileReport report;
  std::set<Bytes> known;
  // One pass over the token, not a search per version: start-up stays linear in the keys.
  auto inventory = vault_.inventory();
  if (!inventory) return unexpected(inventory.error());
  for (const auto& key : registry_.all()) {
    for (const auto& v : key->versions) {
      known.insert(v.object.id);
      const std::size_t carriers = inventory->carriers(v.object);
      if (v.state == "destroyed") {
        // Shredded in the state: any object still named by its id or label is key material that
        // should not exist.
        if (carriers > 0)
          report.undestroyed.push_back(describe(*key, v) + ": destroyed, but " + std::to_string(carriers) +
                                       " token object(s) still carry its CKA_ID or label");
        continue;
      }
      if (carriers == 0) {
        report.missing.push_back(describe(*key, v));
        continue;
      }
      if (carriers > 1) {
        report.altered.push_back(describe(*key, v) + ": " + std::to_string(carriers) +
                                 " token objects carry its CKA_ID or label; custody made one");
        continue;
      }
      if (auto ok = vault_.verify(key->algorithm, v.object, v.origin == "generated", key->recovery); !ok) {
        if (ok.error().code == Code::unavailable) return unexpected(ok.error());
        report.altered.push_back(describe(*key, v) + ": " + ok.error().message);
      }
    }
  }
  for (const auto& obj : inventory->labelled(kObjectLabelPrefix))
    if (!known.count(obj.id)) report.strays.push_back(obj.label + " (CKA_ID " + hex_lower(obj.id) + ")");
  for (const auto& what : inventory->unreadable())
    report.strays.push_back("unreadable token object, " + what +
                            ": custody cannot tell whose it is and never uses it; inspect it with the token's tools");
  return report;
}

}  // namespace custody::core
