#pragma once
// Where custodyctl finds an audit log on disk, and the files one log is made of: the daemon
// renames a full file to "<path>.<seq of its last record, 12 digits>" and continues the chain in a
// new <path> (daemon/core/audit/audit_log.h).
#include <string>
#include <vector>

#include "common/expected.h"

namespace custody::cli {

// audit.path of the packaged configuration and of every sample.
inline constexpr const char* kPackagedAuditLog = "/var/log/custody/audit.jsonl";

// The rotated files of the log whose live file is `live`, oldest first, then `live` itself when
// it exists. A directory stands for its audit.jsonl. An error when there is no file at all.
Expected<std::vector<std::string>, std::string> audit_log_files(const std::string& live);

}  // namespace custody::cli
