#pragma once
// The state-changing admin operations of CONTRACT §7, and those that may never run on fewer than
// two approvals. Shared by the configuration's quorum checks and the attestation report.
#include <algorithm>
#include <array>
#include <string>
#include <string_view>

namespace custody {

inline constexpr std::array<std::string_view, 11> kAdminOperations = {
    "create-key",         "rotate-key", "disable-key",             "enable-key",       "schedule-destruction",
    "cancel-destruction", "set-policy", "set-min-decrypt-version", "create-import-job",
    "export-recovery-bundle", "import-recovery-bundle"};

// Key material leaving or entering the token through a recovery bundle is never one person's call.
inline constexpr std::array<std::string_view, 7> kTwoApprovalsAtLeast = {
    "schedule-destruction", "set-policy", "create-import-job", "disable-key", "set-min-decrypt-version",
    "export-recovery-bundle", "import-recovery-bundle"};

inline bool is_admin_operation(std::string_view op) {
  return std::find(kAdminOperations.begin(), kAdminOperations.end(), op) != kAdminOperations.end();
}
// "create-key, rotate-key, …": for messages and help, so that no list of operations is typed twice.
inline std::string admin_operation_list() {
  std::string list;
  for (auto op : kAdminOperations) (list += list.empty() ? "" : ", ") += op;
  return list;
}
inline bool needs_two_approvals_at_least(std::string_view op) {
  return std::find(kTwoApprovalsAtLeast.begin(), kTwoApprovalsAtLeast.end(), op) != kTwoApprovalsAtLeast.end();
}

}  // namespace custody
