// The recovery drill (CONTRACT §11): proves a bundle restores, changing nothing. Each live version
// is unwrapped into a session object, its sample checked, and the object destroyed.
#include <boost/json.hpp>

#include "daemon/core/recovery/recovery.h"

namespace custody::core {

Outcome<boost::json::object> Recovery::drill(const ImportRequest& request) {
  const RecoveryBundle& b = request.bundle;
  const p11::OaepHash* hash = p11::find_oaep_hash(b.mechanism);
  if (!hash) return fail(Code::invalid_argument, "recovery bundle: unknown mechanism " + b.mechanism);
  bool all_passed = true;
  boost::json::array keys;
  for (const auto& k : b.keys) {
    bool key_passed = true;
    boost::json::array versions;
    for (const auto& v : k.versions) {
      if (v.state == "destroyed") continue;
      auto verdict = token_.drill(b.recovery_key_id, *hash, k.name, k.algorithm, v);
      if (!verdict) return unexpected(verdict.error());
      boost::json::object vo{{"version", v.version}, {"passed", verdict->empty()}};
      if (!verdict->empty()) vo["message"] = *verdict;
      key_passed = key_passed && verdict->empty();
      versions.push_back(std::move(vo));
    }
    all_passed = all_passed && key_passed;
    keys.push_back({{"name", k.name}, {"state", key_state_name(k.state)}, {"passed", key_passed}, {"versions", std::move(versions)}});
  }
  return boost::json::object{{"bundle_id", b.id}, {"passed", all_passed}, {"keys", std::move(keys)}};
}

}  // namespace custody::core
