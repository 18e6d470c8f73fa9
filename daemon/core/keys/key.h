#pragma once
// The custody key model: a named key with numbered versions, each one token object.
#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/secure_buffer.h"
#include "daemon/core/keys/policy.h"

namespace custody::core {

// aes_256_kwp_transport: an imported key-encryption key for bulk BYOK migration (unwrap only).
enum class Algorithm { aes_256_gcm, hmac_sha256, aes_256_kwp_transport };
enum class KeyState { enabled, disabled, pending_destruction, destroyed };

const char* algorithm_name(Algorithm a);
std::optional<Algorithm> parse_algorithm(std::string_view s);
const char* key_state_name(KeyState s);
std::optional<KeyState> parse_key_state(std::string_view s);

// ^[a-z0-9][a-z0-9._-]{0,62}$ (CONTRACT §2)
bool valid_key_name(std::string_view name);

// Where a version lives in the token: found by CKA_ID, labelled for people and reconciliation.
struct ObjectRef {
  Bytes id;
  std::string label;
};

struct KeyVersion {
  std::uint32_t version = 0;
  std::string state = "enabled";     // enabled | destroyed
  std::string origin = "generated";  // generated | imported | recovered (from a recovery bundle)
  std::string reason = "created";    // created | rotated | auto-rotated:period | auto-rotated:usage
  std::int64_t created_at = 0;       // unix seconds
  std::optional<std::string> kcv;
  ObjectRef object;
};

// When a key rotates by itself. The usage limit keeps an aes-256-gcm version well below the
// 2^32 random-IV invocations NIST SP 800-38D allows per key.
inline constexpr std::uint64_t kDefaultUsageLimit = std::uint64_t{1} << 31;
struct RotationPolicy {
  std::optional<std::int64_t> period_seconds;
  std::uint64_t usage_limit = kDefaultUsageLimit;
};

struct Key {
  std::string name;
  Algorithm algorithm = Algorithm::aes_256_gcm;
  KeyState state = KeyState::enabled;
  std::uint32_t current_version = 0;
  std::uint32_t min_decrypt_version = 1;
  std::optional<std::int64_t> destroy_at;
  std::int64_t created_at = 0;
  RotationPolicy rotation;
  Policy policy;
  std::vector<KeyVersion> versions;  // ascending by version
  // Created for recovery (CONTRACT §11): extractable, but only under a key the token's Security
  // Officer marked trusted. Fixed at creation; rotation keeps it.
  bool recovery = false;

  const KeyVersion* find_version(std::uint32_t v) const;
};

// Token objects made by custody carry this label prefix, so reconciliation can find strays.
inline constexpr std::string_view kObjectLabelPrefix = "custody:";
std::string object_label(std::string_view key_name, std::uint32_t version);

}  // namespace custody::core
