#include "pkcs11/call_latency.h"

#include <algorithm>
#include <array>
#include <vector>

namespace custody::p11 {

Result<std::chrono::microseconds> median_call_latency(SessionPool& pool, unsigned samples) {
  auto lease = pool.acquire();
  if (!lease) return unexpected(lease.error());
  std::vector<std::chrono::nanoseconds> times;
  times.reserve(samples);
  std::array<std::uint8_t, 16> out{};
  for (unsigned i = 0; i < std::max(samples, 1u); ++i) {
    const auto start = std::chrono::steady_clock::now();
    if (auto st = lease->session().generate_random(out); !st) return unexpected(lease->report(st.error()));
    times.push_back(std::chrono::steady_clock::now() - start);
  }
  std::nth_element(times.begin(), times.begin() + times.size() / 2, times.end());
  return std::chrono::duration_cast<std::chrono::microseconds>(times[times.size() / 2]);
}

}  // namespace custody::p11
