// The configuration loader on arbitrary text: config::parse_config (what custodyd --config and
// --check-config run) never crashes or throws, reports every problem with a message, and what
// it accepts keeps the promises the daemon relies on (socket modes, limits, quorums).
#include <cstdint>
#include <string>

#include "common/admin_operations.h"
#include "config/config.h"
#include "tests/fuzz/fuzz_check.h"

using namespace custody;
using fuzz::check;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  auto parsed = config::parse_config(text, "fuzz.yaml");
  if (!parsed) {
    check(!parsed.error().empty(), "a refused configuration names a problem");
    for (const auto& e : parsed.error()) {
      check(!e.message.empty() && e.line >= 0 && e.column >= 0, "every problem has a message and a place");
      check(!e.format("fuzz.yaml").empty(), "every problem formats");
    }
    return 0;
  }
  const config::Config& c = *parsed;
  check(!c.state_path.empty() && !c.audit.path.empty() && !c.token.module.empty(), "required paths are present");
  check(c.token.label || c.token.serial, "a token is named");
  for (const auto* s : {&c.service_socket, &c.admin_socket}) check((s->mode & 0002) == 0, "no socket is world-writable");
  check((c.admin_socket.mode & 0020) == 0 || c.admin_socket.group, "the admin socket is group-writable only for a named group");
  check(c.service_socket.path != c.admin_socket.path, "two sockets");
  const auto& l = c.limits;
  check(l.max_body_bytes >= 1024 && l.max_json_depth >= 4 && l.max_connections >= 1 && l.max_in_flight >= 1,
        "limits are at least their minimum");
  check(l.max_connections_per_uid <= l.max_connections, "one uid's share fits the service socket");
  check(l.request_timeout.count() > 0 && l.idle_timeout.count() > 0, "timeouts are positive");
  check(!c.token.workers || *c.token.workers <= c.token.sessions, "workers (unless auto) fit the sessions");
  for (const auto& [op, n] : c.dual_control.quorum) {
    check(is_admin_operation(op), "quorum names an admin operation");
    check(n >= 1 && (n >= 2 || !needs_two_approvals_at_least(op)), "security-relevant operations need two approvals");
    check(n <= c.dual_control.operators.size(), "every quorum can be met");
  }
  check(c.dual_control.operators.size() >= 2, "at least two operators");
  return 0;
}
