#include "daemon/core/keys/key_json.h"

#include <boost/json.hpp>

#include "daemon/core/clock.h"
#include "daemon/core/keys/usage_meter.h"

namespace custody::core {

boost::json::object version_to_json(const KeyVersion& v) {
  boost::json::object vo;
  vo["version"] = v.version;
  vo["state"] = v.state;
  vo["origin"] = v.origin;
  vo["created_at"] = rfc3339_seconds(v.created_at);
  if (v.kcv) vo["kcv"] = *v.kcv;
  else vo["kcv"] = nullptr;
  return vo;
}

boost::json::object key_to_json(const Key& key, UsageMeter* meter) {
  boost::json::object o;
  o["name"] = key.name;
  o["algorithm"] = algorithm_name(key.algorithm);
  o["state"] = key_state_name(key.state);
  o["current_version"] = key.current_version;
  o["recovery"] = key.recovery;
  o["min_decrypt_version"] = key.min_decrypt_version;
  if (key.destroy_at) o["destroy_at"] = rfc3339_seconds(*key.destroy_at);
  o["created_at"] = rfc3339_seconds(key.created_at);
  boost::json::array versions;
  for (const auto& v : key.versions) {
    boost::json::object vo = version_to_json(v);
    vo["reason"] = v.reason;
    if (meter && key.algorithm == Algorithm::aes_256_gcm && v.state != "destroyed") {
      // null, not 0, when the count cannot be read: an unknown count is no count.
      if (auto used = meter->used(key.name, v.version)) vo["encryptions"] = *used;
      else vo["encryptions"] = nullptr;
    }
    versions.push_back(std::move(vo));
  }
  o["versions"] = std::move(versions);
  boost::json::object rotation;
  if (key.rotation.period_seconds) rotation["period_seconds"] = *key.rotation.period_seconds;
  else rotation["period_seconds"] = nullptr;
  rotation["usage_limit"] = key.rotation.usage_limit;
  o["rotation"] = std::move(rotation);
  o["policy"] = policy_to_json(key.policy);
  return o;
}

}  // namespace custody::core
