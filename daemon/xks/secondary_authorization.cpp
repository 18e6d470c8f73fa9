#include "daemon/xks/secondary_authorization.h"

namespace custody::xks {

bool glob_match(std::string_view p, std::string_view t) {
  // Iterative matching with one backtrack point: linear in practice, never exponential.
  std::size_t pi = 0, ti = 0, star = std::string_view::npos, mark = 0;
  while (ti < t.size()) {
    if (pi < p.size() && (p[pi] == '?' || p[pi] == t[ti])) {
      ++pi;
      ++ti;
    } else if (pi < p.size() && p[pi] == '*') {
      star = pi++;
      mark = ti;
    } else if (star != std::string_view::npos) {
      pi = star + 1;
      ti = ++mark;
    } else {
      return false;
    }
  }
  while (pi < p.size() && p[pi] == '*') ++pi;
  return pi == p.size();
}

namespace {

// nullopt: the condition holds; else why not.
std::optional<std::string> check(const char* field, const std::vector<std::string>& patterns,
                                 const std::optional<std::string>& value) {
  if (patterns.empty()) return std::nullopt;
  if (!value) return std::string(field) + " is absent";
  for (const auto& p : patterns)
    if (glob_match(p, *value)) return std::nullopt;
  return std::string(field) + " does not match";
}

}  // namespace

AuthorizationVerdict authorize(const std::vector<AuthorizationRule>& rules, const AuthorizationRequest& r) {
  AuthorizationVerdict v;
  for (const auto& rule : rules) {
    std::optional<std::string> why = check("externalKeyId", rule.keys, r.external_key_id);
    if (!why) why = check("awsPrincipalArn", rule.principals, r.principal);
    if (!why) why = check("kmsKeyArn", rule.kms_key_arns, r.kms_key_arn);
    if (!why) why = check("kmsOperation", rule.operations, r.operation);
    if (!why) why = check("awsSourceVpc", rule.source_vpcs, r.source_vpc);
    if (!why) why = check("awsSourceVpce", rule.source_vpces, r.source_vpce);
    if (!why) {
      v.allowed = true;
      v.allowed_by = rule.name;
      v.reasons.clear();
      return v;
    }
    v.reasons.push_back(rule.name + ": " + *why);
  }
  return v;
}

}  // namespace custody::xks
