#include "daemon/core/keys/policy.h"

#include <pwd.h>

#include <boost/json.hpp>

namespace custody::core {

const char* operation_name(Operation op) {
  switch (op) {
    case Operation::wrap: return "wrap";
    case Operation::unwrap: return "unwrap";
    case Operation::datakey: return "datakey";
    case Operation::rewrap: return "rewrap";
    case Operation::derive: return "derive";
  }
  return "wrap";
}

std::optional<Operation> parse_operation(std::string_view s) {
  for (Operation op : kAllOperations)
    if (s == operation_name(op)) return op;
  return std::nullopt;
}

namespace {
constexpr std::uint8_t bit(Operation op) { return static_cast<std::uint8_t>(1u << static_cast<unsigned>(op)); }

bool matches(const PolicyRule& r, const Peer& peer) {
  if (r.uid) return *r.uid == peer.uid;
  if (r.gid) return *r.gid == peer.gid;
  return r.resolved_uid && *r.resolved_uid == peer.uid;
}

std::optional<std::uint32_t> as_id(const boost::json::value& v) {
  if (v.is_int64() && v.as_int64() >= 0 && v.as_int64() <= UINT32_MAX) return static_cast<std::uint32_t>(v.as_int64());
  if (v.is_uint64() && v.as_uint64() <= UINT32_MAX) return static_cast<std::uint32_t>(v.as_uint64());
  return std::nullopt;
}
}  // namespace

bool Policy::allows(const Peer& peer, Operation op) const {
  for (const auto& r : rules)
    if ((r.operations & bit(op)) && matches(r, peer)) return true;
  return false;
}

bool Policy::allows_any(const Peer& peer) const {
  for (const auto& r : rules)
    if (r.operations && matches(r, peer)) return true;
  return false;
}

Outcome<Policy> parse_policy(const boost::json::value& v, bool require_known_users) {
  if (!v.is_array()) return fail(Code::invalid_argument, "policy must be a list of rules");
  if (v.as_array().size() > 256) return fail(Code::invalid_argument, "policy has more than 256 rules");
  Policy p;
  std::size_t i = 0;
  for (const auto& item : v.as_array()) {
    const std::string where = "policy[" + std::to_string(i++) + "]";
    if (!item.is_object()) return fail(Code::invalid_argument, where + " must be an object");
    const auto& o = item.as_object();
    PolicyRule r;
    int subjects = 0;
    for (const auto& [k, val] : o) {
      if (k == "uid") {
        auto id = as_id(val);
        if (!id) return fail(Code::invalid_argument, where + ".uid must be a non-negative integer");
        r.uid = *id, ++subjects;
      } else if (k == "gid") {
        auto id = as_id(val);
        if (!id) return fail(Code::invalid_argument, where + ".gid must be a non-negative integer");
        r.gid = *id, ++subjects;
      } else if (k == "name") {
        if (!val.is_string() || val.as_string().empty())
          return fail(Code::invalid_argument, where + ".name must be a user name");
        r.name = std::string(val.as_string());
        struct passwd pw {}, *found = nullptr;
        char buf[4096];
        if (getpwnam_r(r.name->c_str(), &pw, buf, sizeof buf, &found) == 0 && found)
          r.resolved_uid = found->pw_uid;
        else if (require_known_users)
          return fail(Code::invalid_argument, where + ".name: no such user '" + *r.name + "'");
        ++subjects;
      } else if (k == "operations") {
        if (!val.is_array() || val.as_array().empty())
          return fail(Code::invalid_argument, where + ".operations must be a non-empty list");
        for (const auto& opv : val.as_array()) {
          auto op = opv.is_string() ? parse_operation(opv.as_string()) : std::nullopt;
          if (!op)
            return fail(Code::invalid_argument,
                        where + ".operations: each must be one of wrap, unwrap, datakey, rewrap, derive");
          r.operations |= bit(*op);
        }
      } else {
        return fail(Code::invalid_argument, where + ": unknown field '" + std::string(k) + "'");
      }
    }
    if (subjects != 1) return fail(Code::invalid_argument, where + " needs exactly one of uid, gid or name");
    if (!r.operations) return fail(Code::invalid_argument, where + ".operations is required");
    p.rules.push_back(std::move(r));
  }
  return p;
}

boost::json::value policy_to_json(const Policy& p) {
  boost::json::array rules;
  for (const auto& r : p.rules) {
    boost::json::object o;
    if (r.uid) o["uid"] = *r.uid;
    else if (r.gid) o["gid"] = *r.gid;
    else if (r.name) o["name"] = *r.name;
    boost::json::array ops;
    for (Operation op : kAllOperations)
      if (r.operations & bit(op)) ops.emplace_back(operation_name(op));
    o["operations"] = std::move(ops);
    rules.push_back(std::move(o));
  }
  return rules;
}

}  // namespace custody::core
