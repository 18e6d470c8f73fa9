#pragma once
// Key metadata as the API shows it (CONTRACT §3, GET /v1/keys/{name}).
#include <boost/json/object.hpp>

#include "daemon/core/key.h"

namespace custody::core {

boost::json::object key_to_json(const Key& key);

}  // namespace custody::core
