#include "daemon/core/clock.h"

#include <cstdio>
#include <ctime>

namespace custody::core {

std::string rfc3339(std::chrono::system_clock::time_point t, bool microseconds) {
  using namespace std::chrono;
  auto us = duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count();
  std::time_t secs = static_cast<std::time_t>(us / 1'000'000);
  if (us < 0 && us % 1'000'000) --secs;
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[48];
  std::size_t n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  if (microseconds) {
    long frac = static_cast<long>(us - static_cast<long long>(secs) * 1'000'000);
    std::snprintf(buf + n, sizeof buf - n, ".%06ldZ", frac);
  } else {
    std::snprintf(buf + n, sizeof buf - n, "Z");
  }
  return buf;
}

}  // namespace custody::core
