#pragma once
// How long the token takes to answer one small call, to tell a token in this process (a few
// microseconds: calling it from the I/O thread is cheapest) from one across a bus or a network
// (hundreds of microseconds or more: worth a pool of threads overlapping the round trips).
#include <chrono>

#include "pkcs11/session_pool.h"

namespace custody::p11 {

// The median of `samples` C_GenerateRandom calls of 16 bytes on one leased session.
Result<std::chrono::microseconds> median_call_latency(SessionPool& pool, unsigned samples = 32);

}  // namespace custody::p11
