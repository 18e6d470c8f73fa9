#pragma once
// The machine's floor for any local daemon: a one-byte round trip between two processes over a
// Unix socket pair. A lone client of custodyd pays it on every request, on top of the token and
// the audit sync; on a virtual machine it is often tens of microseconds.
#include "bench/report.h"

namespace custody::bench {

inline constexpr const char* kIpcRow = "unix socket round trip";

void run_ipc_floor(unsigned samples, Report& report);

}  // namespace custody::bench
