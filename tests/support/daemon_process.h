#pragma once
// A real custodyd on a fresh SoftHSMv2 token in a temp dir, started as a child process, with
// clients for its service and admin sockets.
#include <sys/resource.h>
#include <sys/types.h>

#include <boost/json.hpp>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "common/base64.h"
#include "common/secure_buffer.h"
#include "custody/unix_http_client.h"
#include "tests/support/softhsm_token.h"

namespace custody::test {

struct DaemonOptions {
  std::string service_mode = "0660";
  std::string service_group;  // sockets.service.group, when not empty
  std::optional<rlim_t> file_size_limit;  // RLIMIT_FSIZE for the daemon
  std::string durability = "group";
  std::string extra_limits;  // YAML lines under "limits:", each indented by two spaces
  std::string extra_yaml;    // further top-level sections
  std::string extra_audit;   // YAML lines under "audit:", each indented by two spaces
  std::map<std::string, std::string> env;  // e.g. CUSTODY_FAULT_POINT
  std::vector<std::pair<std::string, std::string>> extra_operators;  // name, public key PEM path
  std::string module = CUSTODY_SOFTHSM_MODULE;  // e.g. CUSTODY_FAULT_SHIM
  std::string init_args;                        // token.init_args, when not empty
  unsigned token_sessions = 2;                  // token.sessions
  std::string token_workers = "auto";           // token.workers
  std::string extra_dual_control;  // YAML lines under "dual_control:" (e.g. "  quorum: {rotate-key: 1}"), each indented by two spaces
  std::chrono::seconds start_timeout{20};  // start() gives up when health has not answered by then
  // A fleet (docs/fleet.md): the token another daemon made (one token, many daemons), that
  // daemon's dir to take the operator keys from, and the state section's lines (each indented by
  // two spaces) instead of "path: <dir>/state.db".
  std::optional<TokenFiles> shared_token;
  std::string operator_keys_from;
  std::string state_yaml;
};

class Daemon {
 public:
  explicit Daemon(DaemonOptions options = {});
  ~Daemon();

  void start();
  // SIGTERM, then waits; returns the exit status (-1 if killed by a signal).
  int terminate();
  // SIGKILL (a crash: no shutdown path runs), then reaps the process.
  void kill_hard();
  bool running();
  // Waits for the process to end by itself; its exit status, or -1 on timeout or signal.
  int wait_exit(std::chrono::seconds timeout = std::chrono::seconds(20));
  DaemonOptions& options() { return options_; }
  pid_t pid() const { return pid_; }

  const std::string& dir() const { return dir_.path(); }
  std::string service_socket() const { return dir() + "/service.sock"; }
  std::string admin_socket() const { return dir() + "/admin.sock"; }
  std::string audit_path() const { return dir() + "/audit.jsonl"; }
  std::string config_path() const { return dir() + "/custodyd.yaml"; }
  const TokenFiles& token() const { return token_; }
  std::string log() const { return read_file(dir() + "/custodyd.log"); }

  client::UnixHttpClient& service() { return *service_; }
  client::UnixHttpClient& admin() { return *admin_; }
  // Closes the kept-alive connections of service() and admin() (they reconnect on their next
  // call), so that a test counting connection slots holds every open one itself.
  void drop_client_connections();

  // POST to the service socket; the parsed body and the status.
  std::pair<int, boost::json::value> post(const std::string& target, const boost::json::value& body);
  // Proposes an admin operation and approves it as alice and bob (the default quorum of 2).
  // 201 when it executed; else the status of the refusal or of the failed operation's error;
  // -1 when the daemon closed the connection without an answer.
  std::pair<int, boost::json::value> admin_operation(const std::string& operation, boost::json::object params);
  int create_key(const std::string& name, const std::string& algorithm, const std::string& policy_json);
  // Signs request id's challenge as one of the test operators (alice, bob: EC P-256; carol: RSA).
  std::pair<int, boost::json::value> approve(const std::string& id, const std::string& operator_name);
  std::string operator_key(const std::string& operator_name) const { return dir() + "/" + operator_name + ".key"; }
  // Parsed audit records, in order.
  std::vector<boost::json::object> audit_records() const;

 private:
  DaemonOptions options_;
  TempDir dir_;
  TokenFiles token_;
  pid_t pid_ = -1;
  std::unique_ptr<client::UnixHttpClient> service_, admin_;
  // Sanitizer builds: a report in the daemon's log fails the test (terminate and the destructor
  // look at what was logged since the last look).
  void fail_on_sanitizer_report();
  std::size_t log_checked_ = 0;
};

// A policy allowing the test process every data-plane operation.
std::string allow_me_everything();

// Runs fn(client on d's service socket) in a child acting as uid/gid 65534 (nobody/nogroup); its
// result comes back through a pipe (negative when the child could not run it). The daemon's
// directory must be searchable by others.
int run_as_nobody(Daemon& d, const std::function<int(client::UnixHttpClient&)>& fn);

// Small conveniences the end-to-end tests share.
inline std::string b64(const std::string& s) { return base64_encode(to_bytes(s)); }
inline std::string field(const boost::json::value& v, const char* name) { return std::string(v.at(name).as_string()); }

}  // namespace custody::test
