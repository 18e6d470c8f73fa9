#pragma once
// The peer to beat for derive: p11-kit's own PKCS#11 remoting (`p11-kit server` exporting the
// same token, p11-kit-client.so loaded here), HMAC-SHA256 C_Sign at 1 and 16 client threads.
// When either part is not installed the rows are missing with the reason; the run goes on.
#include <string>

#include "bench/report.h"
#include "tests/support/softhsm_token.h"

namespace custody::bench {

inline constexpr const char* kP11KitClientModule = "/usr/lib/x86_64-linux-gnu/pkcs11/p11-kit-client.so";
inline constexpr unsigned kP11KitThreads[] = {1, 16};

// "HMAC-SHA256 t=16"
std::string p11kit_row_name(unsigned threads);

// work_dir holds the server's socket and output.
void run_p11kit(const test::TokenFiles& token, const std::string& work_dir, double seconds, Report& report);

}  // namespace custody::bench
