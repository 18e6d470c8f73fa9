#include "daemon/core/key_admin.h"

#include <openssl/rand.h>

#include "common/hex.h"

namespace custody::core {

Outcome<KeyVersion> KeyAdmin::new_version(const std::string& name, Algorithm algorithm, std::uint32_t version) {
  KeyVersion v;
  v.version = version;
  v.created_at = unix_seconds(clock_.now());
  v.object.id.resize(16);
  if (RAND_bytes(v.object.id.data(), 16) != 1) return fail(Code::internal, "no randomness for the object id");
  v.object.label = object_label(name, version);
  if (auto r = vault_.generate(algorithm, v.object); !r) return unexpected(r.error());
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

Outcome<std::shared_ptr<const Key>> KeyAdmin::create_key(const std::string& name, Algorithm algorithm, Policy policy) {
  std::lock_guard lock(mutex_);
  if (!valid_key_name(name))
    return fail(Code::invalid_argument, "key names match ^[a-z0-9][a-z0-9._-]{0,62}$");
  if (registry_.find(name)) return fail(Code::failed_precondition, "a key named '" + name + "' already exists");
  auto v = new_version(name, algorithm, 1);
  if (!v) return unexpected(v.error());
  Key key;
  key.name = name;
  key.algorithm = algorithm;
  key.current_version = 1;
  key.created_at = v->created_at;
  key.policy = std::move(policy);
  key.versions.push_back(std::move(*v));
  if (auto r = store_.insert_key(key); !r) return unexpected(r.error());
  registry_.put(key);
  return registry_.find(name);
}

Outcome<std::shared_ptr<const Key>> KeyAdmin::rotate_key(const std::string& name) {
  std::lock_guard lock(mutex_);
  auto current = registry_.find(name);
  if (!current) return fail(Code::not_found, "no key named '" + name + "'");
  if (current->state != KeyState::enabled)
    return fail(Code::failed_precondition, "key '" + name + "' is " + key_state_name(current->state) + "; only enabled keys rotate");
  auto v = new_version(name, current->algorithm, current->current_version + 1);
  if (!v) return unexpected(v.error());
  if (auto r = store_.add_version(name, *v); !r) return unexpected(r.error());
  Key next = *current;
  next.current_version = v->version;
  next.versions.push_back(std::move(*v));
  registry_.put(std::move(next));
  return registry_.find(name);
}

}  // namespace custody::core
