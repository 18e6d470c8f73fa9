#pragma once
// Waiting for a time the daemon named (a job's expires_at, a key's destroy_at) instead of
// sleeping a fixed guess: the daemon compares whole seconds of the same wall clock.
#include <chrono>
#include <ctime>
#include <string>
#include <thread>

namespace custody::test {

// Returns once the wall clock has reached `rfc3339` ("YYYY-MM-DDTHH:MM:SSZ"); false when the text
// does not parse or the time is further away than `bound`.
inline bool wait_until_wall_clock(const std::string& rfc3339, std::chrono::seconds bound = std::chrono::seconds(10)) {
  std::tm tm{};
  const char* end = ::strptime(rfc3339.c_str(), "%Y-%m-%dT%H:%M:%S", &tm);
  if (!end) return false;
  const auto at = std::chrono::system_clock::from_time_t(::timegm(&tm));
  const auto deadline = std::chrono::steady_clock::now() + bound;
  while (std::chrono::system_clock::now() < at) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return true;
}

}  // namespace custody::test
