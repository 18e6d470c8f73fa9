#pragma once
// Key metadata as the API shows it (CONTRACT §3, GET /v1/keys/{name}).
#include <boost/json/object.hpp>

#include "daemon/core/keys/key.h"

namespace custody::core {

class UsageMeter;

// version, state, origin, created_at, kcv: what both the metadata and the attestation report
// say of a version (CONTRACT §3, §6).
boost::json::object version_to_json(const KeyVersion& v);

// With a meter, each aes-256-gcm version also shows its encryption count.
boost::json::object key_to_json(const Key& key, UsageMeter* meter = nullptr);

}  // namespace custody::core
