#pragma once
// What the kernel says about a process: context switches of all its threads and its resident size.
#include <sys/types.h>

#include <cstdint>
#include <optional>

namespace custody::bench {

// voluntary + nonvoluntary context switches summed over /proc/PID/task/*/status (threads that
// ended meanwhile are not counted: the daemon's threads live as long as it does).
std::optional<std::uint64_t> context_switches(pid_t pid);

// VmRSS of /proc/PID/status, in MiB.
std::optional<double> resident_mib(pid_t pid);

}  // namespace custody::bench
