#pragma once
// The keys a daemon phase makes for the run and the exact request bytes of each data-plane
// operation (CONTRACT §3), single or in the batch form.
#include <array>
#include <string>
#include <string_view>

#include "common/expected.h"
#include "tests/support/daemon_process.h"

namespace custody::bench {

inline constexpr std::array<std::string_view, 5> kDataPlaneOps = {"wrap", "unwrap", "datakey", "rewrap", "derive"};

struct BenchKeys {
  std::string aes;         // aes-256-gcm: wrap, unwrap, datakey, rewrap
  std::string hmac;        // hmac-sha256: derive
  std::string ciphertext;  // a 32-byte DEK wrapped under aes (base64 blob), for unwrap and rewrap
};

// Creates both keys through dual control with a policy allowing this process everything, and
// wraps the DEK that unwrap and rewrap send.
Expected<BenchKeys, std::string> make_bench_keys(test::Daemon& daemon, const std::string& aes_name,
                                                 const std::string& hmac_name);

// Wraps the benchmark's 32-byte DEK under the key: the base64 blob.
Expected<std::string, std::string> wrap_dek(test::Daemon& daemon, const std::string& aes_name);

// The HTTP request for op: a single request when batch_items is 0, else {"batch": [...]}.
std::string data_plane_request(std::string_view op, const BenchKeys& keys, unsigned batch_items);

}  // namespace custody::bench
