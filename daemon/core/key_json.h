#pragma once
// Key metadata as the API shows it (CONTRACT §3, GET /v1/keys/{name}).
#include <boost/json/object.hpp>

#include "daemon/core/key.h"

namespace custody::core {

class UsageMeter;

// With a meter, each aes-256-gcm version also shows its encryption count.
boost::json::object key_to_json(const Key& key, UsageMeter* meter = nullptr);

}  // namespace custody::core
