#pragma once
// A simulated network HSM: the fault shim in front of SoftHSMv2 sleeps a fixed round trip in
// every C_Encrypt/C_Decrypt/C_Sign; with `sessions` sessions the daemon can at best do
// sessions ÷ latency operations per second, and unwrap at 64 connections is measured against it.
#include <string>

#include "bench/report.h"

namespace custody::bench {

inline constexpr unsigned kNetworkHsmLatencyUs = 2000;
inline constexpr unsigned kNetworkHsmSessions = 16;
inline constexpr unsigned kNetworkHsmConnections = 64;
inline constexpr const char* kNetworkHsmLimitFigure = "network_hsm.limit_ops";

void run_network_hsm(const std::string& workers, double seconds, Report& report);

}  // namespace custody::bench
