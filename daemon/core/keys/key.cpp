#include "daemon/core/keys/key.h"

namespace custody::core {

const char* algorithm_name(Algorithm a) {
  switch (a) {
    case Algorithm::aes_256_gcm: return "aes-256-gcm";
    case Algorithm::hmac_sha256: return "hmac-sha256";
    case Algorithm::aes_256_kwp_transport: return "aes-256-kwp-transport";
  }
  return "aes-256-gcm";
}

std::optional<Algorithm> parse_algorithm(std::string_view s) {
  if (s == "aes-256-gcm") return Algorithm::aes_256_gcm;
  if (s == "hmac-sha256") return Algorithm::hmac_sha256;
  if (s == "aes-256-kwp-transport") return Algorithm::aes_256_kwp_transport;
  return std::nullopt;
}

const char* key_state_name(KeyState s) {
  switch (s) {
    case KeyState::enabled: return "enabled";
    case KeyState::disabled: return "disabled";
    case KeyState::pending_destruction: return "pending_destruction";
    case KeyState::destroyed: return "destroyed";
  }
  return "enabled";
}

std::optional<KeyState> parse_key_state(std::string_view s) {
  for (auto st : {KeyState::enabled, KeyState::disabled, KeyState::pending_destruction, KeyState::destroyed})
    if (s == key_state_name(st)) return st;
  return std::nullopt;
}

bool valid_key_name(std::string_view name) {
  if (name.empty() || name.size() > 63) return false;
  auto lower_or_digit = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
  if (!lower_or_digit(name[0])) return false;
  for (char c : name.substr(1))
    if (!lower_or_digit(c) && c != '.' && c != '_' && c != '-') return false;
  return true;
}

const KeyVersion* Key::find_version(std::uint32_t v) const {
  if (v == 0 || v > versions.size()) return nullptr;
  const KeyVersion& kv = versions[v - 1];
  return kv.version == v ? &kv : nullptr;
}

std::string object_label(std::string_view key_name, std::uint32_t version) {
  return std::string(kObjectLabelPrefix) + std::string(key_name) + ":v" + std::to_string(version);
}

}  // namespace custody::core
