#include "daemon/core/key_json.h"

#include <boost/json.hpp>

#include "daemon/core/clock.h"

namespace custody::core {

boost::json::object key_to_json(const Key& key) {
  boost::json::object o;
  o["name"] = key.name;
  o["algorithm"] = algorithm_name(key.algorithm);
  o["state"] = key_state_name(key.state);
  o["current_version"] = key.current_version;
  o["min_decrypt_version"] = key.min_decrypt_version;
  if (key.destroy_at) o["destroy_at"] = rfc3339(std::chrono::system_clock::time_point(std::chrono::seconds(*key.destroy_at)));
  o["created_at"] = rfc3339(std::chrono::system_clock::time_point(std::chrono::seconds(key.created_at)));
  boost::json::array versions;
  for (const auto& v : key.versions) {
    boost::json::object vo;
    vo["version"] = v.version;
    vo["state"] = v.state;
    vo["origin"] = v.origin;
    vo["created_at"] = rfc3339(std::chrono::system_clock::time_point(std::chrono::seconds(v.created_at)));
    if (v.kcv) vo["kcv"] = *v.kcv;
    else vo["kcv"] = nullptr;
    versions.push_back(std::move(vo));
  }
  o["versions"] = std::move(versions);
  o["policy"] = policy_to_json(key.policy);
  return o;
}

}  // namespace custody::core
