#include "tests/support/daemon_process.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "cli/approval_signer.h"
#include "common/base64.h"

namespace custody::test {

Daemon::Daemon(DaemonOptions options) : options_(std::move(options)) {
  token_ = options_.shared_token ? *options_.shared_token : make_softhsm_token(dir(), "custody-e2e");
  for (auto [name, algorithm] : {std::pair{"alice", "EC -pkeyopt ec_paramgen_curve:P-256"},
                                 std::pair{"bob", "EC -pkeyopt ec_paramgen_curve:P-256"},
                                 std::pair{"carol", "RSA -pkeyopt rsa_keygen_bits:2048"}}) {
    const std::string key = operator_key(name);
    if (!options_.operator_keys_from.empty()) {
      const std::string from = options_.operator_keys_from + "/" + name;
      if (run("cp " + from + ".key " + key + " && cp " + from + ".pub " + dir() + "/" + name + ".pub") != 0)
        throw std::runtime_error("cannot copy the test operator keys");
      continue;
    }
    if (run("openssl genpkey -algorithm " + std::string(algorithm) + " -out " + key + " 2>/dev/null && openssl pkey -in " +
            key + " -pubout -out " + dir() + "/" + name + ".pub 2>/dev/null") != 0)
      throw std::runtime_error("cannot make the test operator keys");
  }
  // The harness's own limits, unless extra_limits sets the key (YAML would keep the first of two).
  auto default_limit = [&](const std::string& key, const std::string& value) {
    return options_.extra_limits.find("  " + key + ":") == std::string::npos ? "  " + key + ": " + value + "\n" : "";
  };
  std::ostringstream yaml;
  yaml << "token:\n" << (options_.init_args.empty() ? "" : "  init_args: \"" + options_.init_args + "\"\n")
       << "  module: " << options_.module << "\n  label: " << token_.label << "\n  pin: {file: "
       << token_.pin_file << "}\n  sessions: " << options_.token_sessions
       << "\n  workers: " << options_.token_workers << "\n"
       << "state:\n" << (options_.state_yaml.empty() ? "  path: " + dir() + "/state.db\n" : options_.state_yaml)
       << "audit:\n  path: " << audit_path() << "\n  durability: " << options_.durability << "\n" << options_.extra_audit
       << "sockets:\n  service: {path: " << service_socket() << ", mode: \"" << options_.service_mode << "\""
       << (options_.service_group.empty() ? "" : ", group: " + options_.service_group) << "}\n"
       << "  admin: {path: " << admin_socket() << ", mode: \"0600\"}\n"
       << "limits:\n" << options_.extra_limits << default_limit("max_body_bytes", "65536")
       << default_limit("idle_timeout", "30s") << default_limit("request_timeout", "10s")
       << "dual_control:\n  operators:\n"
       << "    - {name: alice, public_key: " << dir() << "/alice.pub}\n"
       << "    - {name: bob, public_key: " << dir() << "/bob.pub}\n"
       << "    - {name: carol, public_key: " << dir() << "/carol.pub}\n";
  for (const auto& [name, pub] : options_.extra_operators) yaml << "    - {name: " << name << ", public_key: " << pub << "}\n";
  yaml << options_.extra_dual_control;
  yaml << options_.extra_yaml;
  write_file(config_path(), yaml.str());
  start();
}

Daemon::~Daemon() {
  if (pid_ > 0) {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }
  fail_on_sanitizer_report();
}

void Daemon::fail_on_sanitizer_report() {
  const std::string text = log();
  if (log_checked_ >= text.size()) return;
  std::size_t first = std::string::npos;
  for (const char* marker : {"ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "WARNING: ThreadSanitizer",
                             "SUMMARY: UndefinedBehaviorSanitizer"})
    first = std::min(first, text.find(marker, log_checked_));
  log_checked_ = text.size();
  if (first != std::string::npos)
    ADD_FAILURE() << "custodyd reported a sanitizer finding (log " << dir() << "/custodyd.log):\n" << text.substr(first, 8000);
}

void Daemon::start() {
  pid_ = ::fork();
  if (pid_ < 0) throw std::runtime_error("fork failed");
  if (pid_ == 0) {
    ::setenv("SOFTHSM2_CONF", token_.conf.c_str(), 1);
    for (const auto& [k, v] : options_.env) ::setenv(k.c_str(), v.c_str(), 1);
    int log = ::open((dir() + "/custodyd.log").c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
    ::dup2(log, 1);
    ::dup2(log, 2);
    if (options_.file_size_limit) {
      rlimit lim{*options_.file_size_limit, *options_.file_size_limit};
      ::setrlimit(RLIMIT_FSIZE, &lim);
    }
    ::execl(CUSTODYD_PATH, "custodyd", "--config", config_path().c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  service_ = std::make_unique<client::UnixHttpClient>(service_socket());
  admin_ = std::make_unique<client::UnixHttpClient>(admin_socket());
  const auto deadline = std::chrono::steady_clock::now() + options_.start_timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (!running()) throw std::runtime_error("custodyd exited at start:\n" + log());
    client::UnixHttpClient probe(service_socket(), std::chrono::seconds(2));
    if (auto r = probe.call("GET", "/v1/health"); r && r->status == 200) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  throw std::runtime_error("custodyd did not become healthy:\n" + log());
}

void Daemon::drop_client_connections() {
  service_ = std::make_unique<client::UnixHttpClient>(service_socket());
  admin_ = std::make_unique<client::UnixHttpClient>(admin_socket());
}

bool Daemon::running() {
  if (pid_ <= 0) return false;
  int status = 0;
  if (::waitpid(pid_, &status, WNOHANG) == pid_) {
    pid_ = -1;
    return false;
  }
  return true;
}

int Daemon::wait_exit(std::chrono::seconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (pid_ > 0 && std::chrono::steady_clock::now() < deadline) {
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return -1;
}

void Daemon::kill_hard() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  ::waitpid(pid_, nullptr, 0);
  pid_ = -1;
}

int Daemon::terminate() {
  if (pid_ <= 0) return -1;
  ::kill(pid_, SIGTERM);
  // A drain that never ends is a failure to report, not a test that hangs until CI kills it.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  int status = 0;
  pid_t reaped = 0;
  while ((reaped = ::waitpid(pid_, &status, WNOHANG)) == 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  const bool exited = reaped == pid_ && WIFEXITED(status);
  if (reaped != pid_) {
    ADD_FAILURE() << "custodyd did not exit within 30 s of SIGTERM; killed it:\n" << log();
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }
  pid_ = -1;
  fail_on_sanitizer_report();
  return exited ? WEXITSTATUS(status) : -1;
}

std::pair<int, boost::json::value> Daemon::post(const std::string& target, const boost::json::value& body) {
  auto r = service_->call("POST", target, boost::json::serialize(body));
  if (!r) throw std::runtime_error(r.error());
  boost::system::error_code ec;
  auto v = boost::json::parse(r->body, ec);
  return {r->status, ec ? boost::json::value() : v};
}

std::pair<int, boost::json::value> Daemon::approve(const std::string& id, const std::string& operator_name) {
  auto shown = admin_->call("GET", "/v1/admin/requests/" + id);
  if (!shown) return {-1, {}};
  auto request = boost::json::parse(shown->body);
  if (shown->status != 200) return {shown->status, request};
  auto challenge = base64_decode(std::string(request.at("challenge").as_string()));
  auto signature = client::sign_with_key_file(operator_key(operator_name), std::string(challenge->begin(), challenge->end()));
  if (!signature) throw std::runtime_error(signature.error());
  boost::json::value body = {{"operator", operator_name}, {"signature", base64_encode(*signature)}};
  auto r = admin_->call("POST", "/v1/admin/requests/" + id + "/approvals", boost::json::serialize(body));
  if (!r) return {-1, {}};
  return {r->status, boost::json::parse(r->body)};
}

std::pair<int, boost::json::value> Daemon::admin_operation(const std::string& operation, boost::json::object params) {
  boost::json::value body = {{"operation", operation}, {"params", std::move(params)}};
  auto proposed = admin_->call("POST", "/v1/admin/requests", boost::json::serialize(body));
  if (!proposed) return {-1, {}};
  auto p = boost::json::parse(proposed->body);
  if (proposed->status != 201) return {proposed->status, p};
  const std::string id(p.at("request").at("id").as_string());
  std::pair<int, boost::json::value> last;
  for (const char* op : {"alice", "bob"}) {
    last = approve(id, op);
    if (last.first != 200) return last;
  }
  const auto& request = last.second.at("request");
  if (request.at("state").as_string() == "executed") return {201, request};
  if (request.at("state").as_string() == "failed") {
    static const std::map<std::string, int> status = {{"invalid_argument", 400}, {"not_found", 404},
                                                      {"failed_precondition", 409}, {"unavailable", 503}};
    auto it = status.find(std::string(request.at("error").at("code").as_string()));
    return {it == status.end() ? 500 : it->second, request};
  }
  return {0, request};
}

int Daemon::create_key(const std::string& name, const std::string& algorithm, const std::string& policy_json) {
  return admin_operation("create-key", {{"name", name}, {"algorithm", algorithm}, {"policy", boost::json::parse(policy_json)}})
      .first;
}

std::vector<boost::json::object> Daemon::audit_records() const {
  std::vector<boost::json::object> out;
  std::istringstream in(read_file(audit_path()));
  std::string line;
  while (std::getline(in, line)) out.push_back(boost::json::parse(line).as_object());
  return out;
}

std::string allow_me_everything() {
  return "[{\"uid\":" + std::to_string(::getuid()) +
         ",\"operations\":[\"wrap\",\"unwrap\",\"datakey\",\"rewrap\",\"derive\"]}]";
}

int run_as_nobody(Daemon& d, const std::function<int(client::UnixHttpClient&)>& fn) {
  int pipefd[2];
  if (::pipe(pipefd) != 0) return -100;
  pid_t child = ::fork();
  if (child == 0) {
    ::close(pipefd[0]);
    int result = -101;
    if (::setgid(65534) == 0 && ::setuid(65534) == 0) {
      client::UnixHttpClient c(d.service_socket());
      result = fn(c);
    }
    (void)!::write(pipefd[1], &result, sizeof result);
    ::_exit(0);
  }
  ::close(pipefd[1]);
  int result = -102;
  if (::read(pipefd[0], &result, sizeof result) != static_cast<ssize_t>(sizeof result)) result = -103;
  ::close(pipefd[0]);
  ::waitpid(child, nullptr, 0);
  return result;
}

}  // namespace custody::test
