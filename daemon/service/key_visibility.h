#pragma once
// Which keys a caller may see, and what it hears about the others. Operators (the admin socket)
// see every key, so they may learn that one is missing. Anyone else gets one answer for a key
// that does not exist and for a key they may not use: they must not learn which keys exist.
#include <string>

#include "daemon/core/error.h"
#include "daemon/core/keys/key.h"
#include "daemon/core/keys/policy.h"

namespace custody::service {

inline bool may_see(bool every_key, const core::Key& key, const core::Peer& peer) {
  return every_key || key.policy.allows_any(peer);
}

inline core::Error unknown_or_not_yours(bool every_key, bool exists, const std::string& name, const core::Peer& peer) {
  if (every_key && !exists) return {core::Code::not_found, "no key named '" + name + "'"};
  return {core::Code::permission_denied, "uid " + std::to_string(peer.uid) + " may not use key '" + name + "'"};
}

}  // namespace custody::service
