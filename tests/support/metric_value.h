#pragma once
// One series of a real daemon's /metrics, read as a test asserts on it.
#include <stdexcept>
#include <string>

#include "tests/support/daemon_process.h"

namespace custody::test {

// The value of series (its name, and labels exactly as /metrics prints them) on the service
// socket; throws when /metrics fails or does not have it.
inline double metric_value(Daemon& d, const std::string& series) {
  auto r = d.service().call("GET", "/metrics");
  if (!r || r->status != 200) throw std::runtime_error("GET /metrics failed");
  const std::string line = "\n" + series + " ";
  const auto at = r->body.find(line);
  if (at == std::string::npos) throw std::runtime_error("no " + series + " in /metrics");
  return std::stod(r->body.substr(at + line.size()));
}

}  // namespace custody::test
