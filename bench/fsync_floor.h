#pragma once
// The durability floor: append a 300-byte line to a file in the audit log's directory and
// fdatasync it, many times. A lone client waiting for a durable audit record cannot beat it.
#include <string>

#include "bench/report.h"

namespace custody::bench {

inline constexpr const char* kFsyncRow = "append 300 B + fdatasync";

void run_fsync_floor(const std::string& directory, unsigned samples, Report& report);

}  // namespace custody::bench
