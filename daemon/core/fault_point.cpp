#include "daemon/core/fault_point.h"

#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>

namespace custody::core {
namespace {

struct Delay {
  std::string name;
  std::chrono::milliseconds length{0};
};

Delay armed_delay() {
  const char* spec = std::getenv("CUSTODY_FAULT_DELAY");
  if (!spec) return {};
  const char* colon = std::strrchr(spec, ':');
  if (!colon) return {};
  return Delay{std::string(spec, colon), std::chrono::milliseconds(std::strtol(colon + 1, nullptr, 10))};
}

}  // namespace

void fault_point(const char* name) {
  static const char* armed = std::getenv("CUSTODY_FAULT_POINT");
  if (armed && std::strcmp(armed, name) == 0) ::_exit(86);
  static const Delay delay = armed_delay();
  if (delay.length.count() > 0 && delay.name == name) std::this_thread::sleep_for(delay.length);
}

}  // namespace custody::core
