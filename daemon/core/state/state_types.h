#pragma once
// The plain records a state store keeps besides keys (which live in daemon/core/keys/key.h):
// shared by every StateStoreApi implementation.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "daemon/core/keys/key.h"

namespace custody::core {

struct Intent {
  std::int64_t id = 0;
  std::string kind;  // create-key | rotate-key | destroy-key
  std::string key_name;
  std::uint32_t version = 0;  // the version being created (create/rotate)
  ObjectRef object;           // the object being created (create/rotate)
  std::int64_t created_at = 0;
};

struct StoredApproval {
  std::string operator_name;
  std::string signature;  // base64, as given
  std::int64_t approved_at = 0;
};

// An admin request as stored; its meaning lives in AdminRequests.
struct StoredRequest {
  std::string id, operation, params, state;
  std::int64_t created_at = 0, expires_at = 0;
  std::uint32_t required = 0;
  std::string challenge;  // the exact bytes operators sign
  std::uint32_t proposer_uid = 0;
  std::optional<std::string> outcome;  // JSON: result or error
  std::vector<StoredApproval> approvals;
  // The fleet member (host id) that took the quorum and runs the request; empty on one host.
  std::string executor;
};

// A BYOK import job as stored; its meaning lives in ImportJobs.
struct StoredJob {
  std::string id, key_name, algorithm, method;
  std::optional<std::string> transport_key;
  std::string state;  // active | used | expired
  std::int64_t created_at = 0, expires_at = 0;
  ObjectRef wrapping;  // the job's RSA key pair (rsa methods)
  std::optional<std::string> public_key;
  std::string policy;  // JSON, for a key the job creates
};

// A block of encryptions granted to one daemon: counts [first, first + count) are its own.
struct UsageBlock {
  std::uint64_t first = 0;
  std::uint64_t count = 0;
};

}  // namespace custody::core
