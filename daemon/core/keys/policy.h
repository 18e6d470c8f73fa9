#pragma once
// Who may do what with a key: rules naming a uid, a gid or a user name, each with operations.
// The peer is identified by SO_PEERCRED; its primary gid is what a gid rule matches.
#include <sys/types.h>

#include <boost/json/value.hpp>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "daemon/core/error.h"

namespace custody::core {

enum class Operation : std::uint8_t { wrap, unwrap, datakey, rewrap, derive };
inline constexpr Operation kAllOperations[] = {Operation::wrap, Operation::unwrap, Operation::datakey,
                                               Operation::rewrap, Operation::derive};
const char* operation_name(Operation op);
std::optional<Operation> parse_operation(std::string_view s);

struct Peer {
  uid_t uid = 0;
  gid_t gid = 0;
  pid_t pid = 0;
};

struct PolicyRule {
  std::optional<uid_t> uid;
  std::optional<gid_t> gid;
  std::optional<std::string> name;  // user name, resolved to resolved_uid when the policy is read
  std::optional<uid_t> resolved_uid;
  std::uint8_t operations = 0;  // bit set of Operation
};

struct Policy {
  std::vector<PolicyRule> rules;
  bool allows(const Peer& peer, Operation op) const;
  bool allows_any(const Peer& peer) const;
};

// Reads a policy from JSON: [{"uid": 1000, "operations": ["wrap", "unwrap"]}, ...].
// A user name that does not resolve is an error for a new policy; in a stored policy (the user
// was deleted since) the rule matches nobody, so the daemon still starts.
Outcome<Policy> parse_policy(const boost::json::value& v, bool require_known_users = true);
boost::json::value policy_to_json(const Policy& p);

}  // namespace custody::core
