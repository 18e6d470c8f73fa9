#pragma once
// Optional secondary authorization (spec "Authorization"): rules on the request metadata KMS sends.
// When rules are configured, a metadata, encrypt or decrypt call runs only if some rule allows it;
// otherwise AccessDeniedException, with each rule's reason for not matching in the audit record.
// GetHealthStatus is never subject to it (the spec excludes it). Patterns take * (any run of
// characters) and ? (one character).
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace custody::xks {

struct AuthorizationRule {
  std::string name;
  std::vector<std::string> keys;  // external key ids (patterns); empty: every key
  // Each list, when not empty, must have a pattern matching the request's field.
  std::vector<std::string> principals;    // awsPrincipalArn
  std::vector<std::string> kms_key_arns;  // kmsKeyArn
  std::vector<std::string> operations;    // kmsOperation
  std::vector<std::string> source_vpcs;   // awsSourceVpc
  std::vector<std::string> source_vpces;  // awsSourceVpce
};

struct AuthorizationRequest {
  std::string external_key_id;
  std::optional<std::string> principal, kms_key_arn, operation, source_vpc, source_vpce;
};

struct AuthorizationVerdict {
  bool allowed = false;
  std::string allowed_by;            // the first rule that allowed it
  std::vector<std::string> reasons;  // "rule: why it did not match", for every rule, when denied
};

bool glob_match(std::string_view pattern, std::string_view text);
AuthorizationVerdict authorize(const std::vector<AuthorizationRule>& rules, const AuthorizationRequest& request);

}  // namespace custody::xks
