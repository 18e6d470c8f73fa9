#include "daemon/service/request.h"

#include <openssl/rand.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <spdlog/spdlog.h>

#include "common/hex.h"

namespace custody::service {
namespace {

// "t" + wall-clock nanoseconds + pid + a counter: unique on this host without randomness.
std::string id_without_randomness() {
  static std::atomic<std::uint64_t> counter{0};
  static std::atomic<bool> logged{false};
  if (!logged.exchange(true)) spdlog::error("the random generator failed; request ids fall back to clock and counter");
  const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                      std::chrono::system_clock::now().time_since_epoch())
                      .count();
  char id[64];
  std::snprintf(id, sizeof id, "t%llx-%x-%llx", static_cast<unsigned long long>(ns), static_cast<unsigned>(::getpid()),
                static_cast<unsigned long long>(counter.fetch_add(1, std::memory_order_relaxed)));
  return id;
}

}  // namespace

std::string choose_request_id(std::string_view from_client) {
  // "-" is the request_id of the daemon's own records: a client must not pass for the daemon.
  bool usable = !from_client.empty() && from_client.size() <= 64 && from_client != "-";
  for (char c : from_client) usable = usable && c > 0x20 && c < 0x7f;
  if (usable) return std::string(from_client);
  std::uint8_t raw[16];
  if (RAND_bytes(raw, sizeof raw) != 1) return id_without_randomness();
  return hex_lower(raw);
}

}  // namespace custody::service
