#pragma once
// The physical limit a co-located application gets: PKCS#11 in this process on the daemon's own
// token, one thread, token-object keys made for the run: AES-256-GCM decrypt of a 32-byte DEK and
// HMAC-SHA256 of a short message.
#include "bench/report.h"
#include "tests/support/softhsm_token.h"

namespace custody::bench {

inline constexpr const char* kDirectDecryptRow = "GCM decrypt 32 B";
inline constexpr const char* kDirectHmacRow = "HMAC-SHA256 sign";

// Points SOFTHSM2_CONF of this process at the token: SoftHSMv2 reads it once per process, so
// every in-process use of SoftHSMv2 in the run is on this token.
void run_direct(const test::TokenFiles& token, double seconds, Report& report);

}  // namespace custody::bench
