#pragma once
// The time seam: everything that stamps or compares times asks a Clock, so tests can move time.
#include <chrono>
#include <string>

namespace custody::core {

class Clock {
 public:
  virtual ~Clock() = default;
  virtual std::chrono::system_clock::time_point now() const = 0;
};

class SystemClock final : public Clock {
 public:
  std::chrono::system_clock::time_point now() const override { return std::chrono::system_clock::now(); }
};

// RFC 3339 UTC: "2026-11-23T23:32:31Z", or with microseconds "2026-11-23T23:32:31.123456Z".
std::string rfc3339(std::chrono::system_clock::time_point t, bool microseconds = false);
// The same for a time stored as unix seconds.
inline std::string rfc3339_seconds(std::int64_t t) {
  return rfc3339(std::chrono::system_clock::time_point(std::chrono::seconds(t)));
}
inline std::int64_t unix_seconds(std::chrono::system_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::seconds>(t.time_since_epoch()).count();
}

}  // namespace custody::core
