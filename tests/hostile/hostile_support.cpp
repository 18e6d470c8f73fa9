#include "tests/hostile/hostile_support.h"

#include <fcntl.h>
#include <grp.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "custody/unix_http_client.h"

namespace custody::hostile {

namespace json = boost::json;
using Clock = std::chrono::steady_clock;

int sanitizer_slowdown() {
#if defined(__SANITIZE_THREAD__)
  return 5;
#elif defined(__SANITIZE_ADDRESS__)
  return 2;
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
  return 5;
#elif __has_feature(address_sanitizer)
  return 2;
#else
  return 1;
#endif
#else
  return 1;
#endif
}

std::chrono::milliseconds p99_bound() { return 300ms * sanitizer_slowdown(); }

namespace {

int remaining_ms(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return left < 0 ? 0 : static_cast<int>(left);
}

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.pop_back();
  std::size_t i = 0;
  while (i < s.size() && (s[i] == ' ' || s[i] == '\t')) ++i;
  return s.substr(i);
}

}  // namespace

std::string RawResponse::header(const std::string& lower_case_name) const {
  auto it = headers.find(lower_case_name);
  return it == headers.end() ? std::string() : it->second;
}

json::value RawResponse::json() const {
  boost::system::error_code ec;
  auto v = json::parse(body, ec);
  return ec ? json::value() : v;
}

std::string error_code(const RawResponse& r) {
  const auto body = r.json();
  if (!body.is_object()) return "";
  const auto* error = body.as_object().if_contains("error");
  if (!error || !error->is_object()) return "";
  const auto* code = error->as_object().if_contains("code");
  return code && code->is_string() ? std::string(code->as_string()) : "";
}

RawConnection::RawConnection(const std::string& socket_path) {
  fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd_ < 0) return;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, socket_path.c_str(), sizeof addr.sun_path - 1);
  // A non-blocking connect on a Unix socket completes at once or fails (EAGAIN: backlog full).
  if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd_);
    fd_ = -1;
  }
}

RawConnection::~RawConnection() {
  if (fd_ >= 0) ::close(fd_);
}

bool RawConnection::send(std::string_view bytes, std::chrono::milliseconds timeout) {
  if (fd_ < 0) return false;
  const auto deadline = Clock::now() + timeout;
  while (!bytes.empty()) {
    ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n > 0) {
      bytes.remove_prefix(static_cast<std::size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      pollfd p{fd_, POLLOUT, 0};
      if (::poll(&p, 1, remaining_ms(deadline)) <= 0) return false;
      continue;
    }
    return false;
  }
  return true;
}

std::size_t RawConnection::stream(std::size_t total, const std::function<void(std::string&)>& fill,
                                  std::chrono::milliseconds stall_timeout) {
  if (fd_ < 0) return 0;
  std::string chunk;
  std::size_t sent = 0, offset = 0;
  while (sent < total) {
    if (offset == chunk.size()) {
      chunk.assign(std::min<std::size_t>(64 * 1024, total - sent), '\0');
      fill(chunk);
      offset = 0;
    }
    ssize_t n = ::send(fd_, chunk.data() + offset, chunk.size() - offset, MSG_NOSIGNAL);
    if (n > 0) {
      offset += static_cast<std::size_t>(n);
      sent += static_cast<std::size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      pollfd p{fd_, POLLOUT, 0};
      if (::poll(&p, 1, static_cast<int>(stall_timeout.count())) <= 0) break;  // the daemon stopped reading
      if (p.revents & (POLLERR | POLLHUP)) break;
      continue;
    }
    break;  // closed or reset by the daemon
  }
  return sent;
}

void RawConnection::shutdown_send() {
  if (fd_ >= 0) ::shutdown(fd_, SHUT_WR);
}

bool RawConnection::receive_some(Clock::time_point deadline) {
  if (fd_ < 0 || ended_) return false;
  char buf[16 * 1024];
  for (;;) {
    ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
    if (n > 0) {
      buffer_.append(buf, static_cast<std::size_t>(n));
      return true;
    }
    if (n == 0) {
      ended_ = true;
      return false;
    }
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) {  // ECONNRESET: closed with our bytes unread
      ended_ = true;
      return false;
    }
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, remaining_ms(deadline)) <= 0) return false;
  }
}

RawResponse RawConnection::read_response(std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  std::size_t end;
  while ((end = buffer_.find("\r\n\r\n")) == std::string::npos)
    if (!receive_some(deadline)) return {};
  RawResponse r;
  std::istringstream head(buffer_.substr(0, end));
  std::string line;
  std::getline(head, line);
  if (line.rfind("HTTP/1.1 ", 0) != 0 || line.size() < 12) return {};
  r.status = std::atoi(line.substr(9, 3).c_str());
  while (std::getline(head, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    auto colon = line.find(':');
    if (colon != std::string::npos) r.headers[lower(line.substr(0, colon))] = trim(line.substr(colon + 1));
  }
  const std::size_t length = static_cast<std::size_t>(std::atoll(r.header("content-length").c_str()));
  while (buffer_.size() < end + 4 + length)
    if (!receive_some(deadline)) return {};
  r.body = buffer_.substr(end + 4, length);
  buffer_.erase(0, end + 4 + length);
  return r;
}

bool RawConnection::closed_within(std::chrono::milliseconds timeout, std::string* extra) {
  const auto deadline = Clock::now() + timeout;
  while (!ended_) {
    const std::size_t before = buffer_.size();
    const bool got = receive_some(deadline);
    if (extra) extra->append(buffer_, before, std::string::npos);
    if (!got && !ended_) return false;  // timed out with the connection still open
  }
  return true;
}

Exchange raw_exchange(const std::string& socket_path, std::string_view bytes, std::chrono::milliseconds timeout) {
  Exchange e;
  RawConnection c(socket_path);
  if (!c.connected()) return e;
  c.send(bytes);  // the daemon may refuse and close before it has read everything
  e.response = c.read_response(timeout);
  e.closed_after = c.closed_within(3s);
  return e;
}

RawResponse send_request(const std::string& socket_path, std::string_view bytes, std::chrono::milliseconds timeout) {
  RawConnection c(socket_path);
  if (!c.connected()) return {};
  c.send(bytes);
  return c.read_response(timeout);
}

std::string http_request(const std::string& method, const std::string& target, const std::string& body,
                         const std::vector<std::string>& extra_headers) {
  std::string r = method + " " + target + " HTTP/1.1\r\nHost: custody\r\n";
  for (const auto& h : extra_headers) r += h + "\r\n";
  if (!body.empty() || method == "POST")
    r += "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
  return r + "\r\n" + body;
}

void expect_contract_error(const RawResponse& r, int status, std::string_view code) {
  EXPECT_EQ(r.status, status) << r.body;
  const auto request_id = r.header("x-request-id");
  EXPECT_FALSE(request_id.empty()) << "no X-Request-Id";
  const auto body = r.json();
  ASSERT_TRUE(body.is_object()) << "not a JSON error body: " << r.body;
  const auto* error = body.as_object().if_contains("error");
  ASSERT_TRUE(error && error->is_object()) << r.body;
  const auto& e = error->as_object();
  ASSERT_TRUE(e.contains("code") && e.at("code").is_string()) << r.body;
  EXPECT_EQ(std::string(e.at("code").as_string()), std::string(code)) << r.body;
  EXPECT_TRUE(e.contains("message") && e.at("message").is_string() && !e.at("message").as_string().empty()) << r.body;
  ASSERT_TRUE(e.contains("request_id") && e.at("request_id").is_string()) << r.body;
  EXPECT_EQ(std::string(e.at("request_id").as_string()), request_id);
  if (status == 429 || status == 503) {
    const auto retry = r.header("retry-after");
    EXPECT_FALSE(retry.empty()) << "a " << status << " without Retry-After";
    EXPECT_TRUE(!retry.empty() && std::all_of(retry.begin(), retry.end(), ::isdigit)) << "Retry-After: " << retry;
  }
}

// --- children acting as other uids ---

namespace {
constexpr char kReady = 1, kDone = 2;
}

void ChildControl::ready() {
  char b = kReady;
  (void)!::write(to_parent_, &b, 1);
}

bool ChildControl::released() {
  pollfd p{from_parent_, POLLIN, 0};
  return ::poll(&p, 1, 0) > 0;  // the parent closed its end: end of file is readable
}

void ChildControl::wait_released() {
  char b;
  while (::read(from_parent_, &b, 1) < 0 && errno == EINTR) {
  }
}

AsUid::AsUid(uid_t uid, std::function<std::string(ChildControl&)> body) {
  int up[2], down[2];
  if (::pipe(up) != 0 || ::pipe(down) != 0) throw std::runtime_error("pipe failed");
  pid_ = ::fork();
  if (pid_ < 0) throw std::runtime_error("fork failed");
  if (pid_ == 0) {
    // Keep only the two pipes, as fds 3 and 4: the parent's connections must not live on here.
    if (::dup2(up[1], 100) < 0 || ::dup2(down[0], 101) < 0 || ::dup2(100, 3) < 0 || ::dup2(101, 4) < 0) ::_exit(3);
    if (::close_range(5, ~0U, 0) != 0) ::_exit(3);
    ::alarm(60);  // never outlive a broken test
    ChildControl control;
    control.to_parent_ = 3;
    control.from_parent_ = 4;
    std::string out;
    const gid_t nogroup = 65534;
    if (::setgroups(1, &nogroup) != 0 || ::setgid(nogroup) != 0 || ::setuid(uid) != 0)
      out = "cannot become uid " + std::to_string(uid);
    else
      out = body(control);
    std::string msg(1, kDone);
    msg += out;
    for (std::string_view left = msg; !left.empty();) {
      ssize_t n = ::write(3, left.data(), left.size());
      if (n <= 0) break;
      left.remove_prefix(static_cast<std::size_t>(n));
    }
    ::_exit(0);
  }
  ::close(up[1]);
  ::close(down[0]);
  ready_fd_ = up[0];
  release_fd_ = down[1];
  ::fcntl(ready_fd_, F_SETFD, FD_CLOEXEC);
  ::fcntl(release_fd_, F_SETFD, FD_CLOEXEC);
}

AsUid::~AsUid() {
  if (!reaped_ && pid_ > 0) {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }
  if (ready_fd_ >= 0) ::close(ready_fd_);
  if (release_fd_ >= 0) ::close(release_fd_);
}

bool AsUid::wait_ready(std::chrono::milliseconds timeout) {
  pollfd p{ready_fd_, POLLIN, 0};
  if (::poll(&p, 1, static_cast<int>(timeout.count())) <= 0) return false;
  char b = 0;
  if (::read(ready_fd_, &b, 1) != 1) return false;
  if (b == kReady) return true;
  result_ += b;  // the child finished without being ready: keep what it said
  return false;
}

void AsUid::release() {
  if (release_fd_ >= 0) ::close(release_fd_);
  release_fd_ = -1;
}

std::string AsUid::result(std::chrono::milliseconds timeout) {
  release();
  if (reaped_) return result_;
  const auto deadline = Clock::now() + timeout;
  char buf[4096];
  for (;;) {
    pollfd p{ready_fd_, POLLIN, 0};
    if (::poll(&p, 1, remaining_ms(deadline)) <= 0) break;
    ssize_t n = ::read(ready_fd_, buf, sizeof buf);
    if (n <= 0) break;
    result_.append(buf, static_cast<std::size_t>(n));
  }
  if (!result_.empty() && result_.front() == kReady) result_.erase(0, 1);
  if (!result_.empty() && result_.front() == kDone) result_.erase(0, 1);
  ::kill(pid_, SIGKILL);
  ::waitpid(pid_, nullptr, 0);
  reaped_ = true;
  return result_;
}

void open_daemon_dir_to_others(const test::Daemon& d) {
  ASSERT_EQ(::chmod(d.dir().c_str(), 0755), 0);
}

// --- the well-behaved client ---

double Latencies::p99() const {
  if (ms.empty()) return 0;
  auto sorted = ms;
  std::sort(sorted.begin(), sorted.end());
  const auto rank = static_cast<std::size_t>(std::ceil(0.99 * static_cast<double>(sorted.size())));
  return sorted[std::max<std::size_t>(rank, 1) - 1];
}

double Latencies::max() const { return ms.empty() ? 0 : *std::max_element(ms.begin(), ms.end()); }

std::string Latencies::describe() const {
  auto sorted = ms;
  std::sort(sorted.begin(), sorted.end(), std::greater<>());
  std::ostringstream out;
  out.precision(1);
  out << std::fixed << sorted.size() << " requests, p50 " << (sorted.empty() ? 0 : sorted[sorted.size() / 2]) << " ms, p99 "
      << p99() << " ms, slowest:";
  for (std::size_t i = 0; i < sorted.size() && i < 8; ++i) out << ' ' << sorted[i];
  return out.str();
}

Latencies measure_wraps_while(const std::string& socket_path, int n, const std::function<bool()>& keep_going,
                              const std::string& key) {
  Latencies l;
  client::UnixHttpClient c(socket_path, std::chrono::seconds(10));
  const std::string target = "/v1/keys/" + key + "/wrap";
  const std::string body = R"({"plaintext":"d2VsbC1iZWhhdmVk","context":{"tenant":"polite"}})";
  for (int i = 0; i < n && keep_going(); ++i) {
    const auto start = Clock::now();
    auto r = c.call("POST", target, body);
    l.ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - start).count());
    if (!r || r->status != 200) ++l.failures;
  }
  return l;
}

Latencies measure_wraps(const std::string& socket_path, int n, const std::string& key) {
  return measure_wraps_while(socket_path, n, [] { return true; }, key);
}

void expect_p99_within_bound(const Latencies& l, const char* during, std::chrono::milliseconds bound,
                             std::size_t min_samples) {
  EXPECT_GE(l.ms.size(), min_samples) << "too few requests measured during " << during;
  EXPECT_EQ(l.failures, 0) << "a well-behaved client's requests failed during " << during;
  EXPECT_LE(l.p99(), static_cast<double>(bound.count())) << "during " << during << ": " << l.describe();
}

// --- checks after an attack ---

std::size_t proc_status_kib(pid_t pid, const char* field) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  const std::string prefix = std::string(field) + ":";
  while (std::getline(in, line))
    if (line.rfind(prefix, 0) == 0) return static_cast<std::size_t>(std::stoull(line.substr(prefix.size())));
  return 0;
}

double metric_sum_in(const std::string& text, const std::string& name) {
  std::istringstream in(text);
  std::string line;
  double sum = 0;
  bool found = false;
  while (std::getline(in, line)) {
    if (line.rfind(name, 0) != 0 || line.size() <= name.size()) continue;
    if (line[name.size()] != ' ' && line[name.size()] != '{') continue;
    sum += std::stod(line.substr(line.rfind(' ') + 1));
    found = true;
  }
  return found ? sum : -1;
}

double metric_sum(RawConnection& c, const std::string& name) {
  if (!c.send(http_request("GET", "/metrics"))) return -1;
  auto r = c.read_response();
  return r.status == 200 ? metric_sum_in(r.body, name) : -1;
}

double metric_sum(const test::Daemon& d, const std::string& name) {
  client::UnixHttpClient admin(d.admin_socket(), std::chrono::seconds(10));
  auto r = admin.call("GET", "/metrics");
  return r && r->status == 200 ? metric_sum_in(r->body, name) : -1;
}

void expect_alive_and_serving(test::Daemon& d, const std::string& key) {
  ASSERT_TRUE(d.running()) << "custodyd died:\n" << d.log().substr(d.log().size() > 4000 ? d.log().size() - 4000 : 0);
  EXPECT_EQ(::kill(d.pid(), 0), 0);
  client::UnixHttpClient c(d.service_socket(), std::chrono::seconds(10));
  auto r = c.call("POST", "/v1/keys/" + key + "/wrap", R"({"plaintext":"c3RpbGwgaGVyZQ=="})");
  ASSERT_TRUE(r) << r.error();
  EXPECT_EQ(r->status, 200) << r->body;
}

std::vector<json::object> audit_records_so_far(const test::Daemon& d) {
  std::vector<json::object> out;
  std::istringstream in(test::read_file(d.audit_path()));
  for (std::string line; std::getline(in, line);) {
    boost::system::error_code ec;
    auto v = json::parse(line, ec);
    if (!ec && v.is_object()) out.push_back(v.as_object());
  }
  return out;
}

void expect_audit_chain_verifies(test::Daemon& d) {
  client::UnixHttpClient admin(d.admin_socket(), std::chrono::seconds(10));
  auto r = admin.call("POST", "/v1/attestation", R"({"nonce":""})");
  ASSERT_TRUE(r) << r.error();
  ASSERT_EQ(r->status, 200) << r->body;
  const std::string pub = d.dir() + "/attestation-pub.pem";
  test::write_file(pub, std::string(json::parse(r->body).at("public_key").as_string()));
  std::vector<std::string> files;
  for (const auto& e : std::filesystem::directory_iterator(d.dir()))
    if (e.path().filename().string().rfind("audit.jsonl.", 0) == 0) files.push_back(e.path().string());
  std::sort(files.begin(), files.end());
  // The daemon may be writing a record right now: check the complete lines written so far.
  const std::string current = test::read_file(d.audit_path());
  const std::string snapshot = d.dir() + "/audit-so-far.jsonl";
  test::write_file(snapshot, current.substr(0, current.rfind('\n') + 1));
  files.push_back(snapshot);
  std::string cmd = std::string(CUSTODYCTL_PATH) + " audit verify";
  for (const auto& f : files) cmd += " " + f;
  const std::string out = d.dir() + "/verify.out";
  const int status = test::run(cmd + " --public-key " + pub + " > " + out + " 2>&1");
  if (status == 0) return;
  // Show the line custodyctl names, from the file being written now.
  const std::string report = test::read_file(out);
  std::string bad_line;
  if (auto at = report.find("line "); at != std::string::npos) {
    const auto n = std::strtoul(report.c_str() + at + 5, nullptr, 10);
    std::istringstream lines(current);
    for (unsigned long i = 1; i <= n && std::getline(lines, bad_line); ++i) {
    }
  }
  ADD_FAILURE() << "custodyctl audit verify exited " << status << ": " << report << "the line: " << bad_line.substr(0, 600);
}

std::string policy(const std::vector<std::pair<uid_t, std::vector<std::string>>>& rules) {
  json::array out;
  for (const auto& [uid, ops] : rules) {
    json::array o;
    for (const auto& op : ops) o.emplace_back(op);
    out.push_back(json::object{{"uid", uid}, {"operations", o}});
  }
  return json::serialize(out);
}

}  // namespace custody::hostile
