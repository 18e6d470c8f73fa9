#pragma once
// One audit record before it is chained (CONTRACT §9). seq, time and prev are added by AuditLog.
#include <boost/json/object.hpp>
#include <cstdint>
#include <optional>
#include <string>

#include "daemon/core/keys/policy.h"

namespace custody::core {

struct AuditEvent {
  std::string type;  // e.g. "wrap", "admin.create-key", "daemon.start"
  std::string request_id;
  Peer client;
  std::string result = "ok";  // "ok" or an error code
  std::optional<std::string> key;
  std::optional<std::uint32_t> version;
  std::optional<std::string> operation;
  std::optional<std::string> operator_name;
  std::optional<std::string> context_sha256;
  boost::json::object extra;  // further fields, after the standard ones
};

}  // namespace custody::core
