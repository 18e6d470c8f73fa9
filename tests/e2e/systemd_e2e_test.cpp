// custodyd under systemd: sockets passed the way systemd passes them (LISTEN_PID, LISTEN_FDS from
// fd 3, LISTEN_FDNAMES), the sd_notify messages on a NOTIFY_SOCKET the test owns, and the
// hardening rating of the shipped unit.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "custody/unix_http_client.h"
#include "tests/support/softhsm_token.h"

namespace custody::test {
namespace {

constexpr gid_t kNogroup = 65534;

// A listening Unix socket made the way a .socket unit makes it (SocketMode=, SocketGroup=).
int make_listening_socket(const std::string& path, mode_t mode, gid_t group) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  if (fd < 0) throw std::runtime_error("socket");
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::chown(path.c_str(), 0, group) != 0 ||
      ::chmod(path.c_str(), mode) != 0 || ::listen(fd, 64) != 0)
    throw std::runtime_error("cannot make the listening socket " + path + ": " + std::strerror(errno));
  return fd;
}

// The datagram socket systemd listens on for sd_notify messages.
class NotifySocket {
 public:
  explicit NotifySocket(std::string path) : path_(std::move(path)) {
    fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path_.c_str(), sizeof addr.sun_path - 1);
    if (fd_ < 0 || ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0)
      throw std::runtime_error("cannot bind the notify socket");
  }
  ~NotifySocket() { ::close(fd_); }
  const std::string& path() const { return path_; }
  const std::vector<std::string>& messages() const { return messages_; }

  // Reads datagrams until one has the assignment `line`, or the deadline passes.
  bool wait_for(const std::string& line, std::chrono::seconds timeout = std::chrono::seconds(20)) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      if (count(line) > seen_for_[line]) {
        ++seen_for_[line];
        return true;
      }
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(std::max<long>(left.count(), 0))) > 0) {
        char buf[4096];
        const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
        if (n > 0) messages_.emplace_back(buf, static_cast<std::size_t>(n));
        continue;
      }
      if (left.count() <= 0) return false;
    }
  }

 private:
  std::size_t count(const std::string& line) const {
    std::size_t n = 0;
    for (const auto& m : messages_) {
      std::istringstream in(m);
      std::string l;
      while (std::getline(in, l))
        if (l == line) ++n;
    }
    return n;
  }
  std::string path_;
  int fd_ = -1;
  std::vector<std::string> messages_;
  std::map<std::string, std::size_t> seen_for_;
};

struct PassedSocket {
  int fd;
  std::string name;  // empty: no LISTEN_FDNAMES entry
};

// A custodyd on a fresh token whose config asks for mode 0600 and no group on both sockets, so
// that a socket that kept the passed mode/group was not touched by the daemon.
class ActivatedDaemon {
 public:
  ActivatedDaemon() : token_(make_softhsm_token(dir_.path(), "custody-systemd")) {
    for (const char* name : {"alice", "bob"})
      if (run("openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 2>/dev/null | openssl pkey -pubout -out " +
              dir() + "/" + name + ".pub 2>/dev/null") != 0)
        throw std::runtime_error("cannot make the operator keys");
    write_file(config(), "token:\n  module: " CUSTODY_SOFTHSM_MODULE "\n  label: " + token_.label + "\n  pin: {file: " +
                             token_.pin_file + "}\n  sessions: 1\n  workers: 0\nstate:\n  path: " + dir() +
                             "/state.db\naudit:\n  path: " + dir() + "/audit.jsonl\nsockets:\n  service: {path: " +
                             service_path() + ", mode: \"0600\"}\n  admin: {path: " + admin_path() +
                             ", mode: \"0600\"}\ndual_control:\n  operators:\n    - {name: alice, public_key: " + dir() +
                             "/alice.pub}\n    - {name: bob, public_key: " + dir() + "/bob.pub}\n");
  }
  ~ActivatedDaemon() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  const std::string& dir() const { return dir_.path(); }
  std::string config() const { return dir() + "/custodyd.yaml"; }
  std::string service_path() const { return dir() + "/service.sock"; }
  std::string admin_path() const { return dir() + "/admin.sock"; }
  std::string log() const { return read_file(dir() + "/custodyd.log"); }

  // Forks custodyd with `sockets` at fd 3, 4, ... as systemd does, and LISTEN_PID set to the
  // child's own pid.
  void start(const std::vector<PassedSocket>& sockets, const std::string& notify_socket, const std::string& watchdog_usec) {
    pid_ = ::fork();
    if (pid_ < 0) throw std::runtime_error("fork");
    if (pid_ != 0) return;
    // Out of the way first, so that dup2 to 3, 4, ... cannot clobber a socket not yet moved.
    std::vector<int> high;
    for (const auto& s : sockets) high.push_back(::fcntl(s.fd, F_DUPFD, 100));
    std::string names;
    for (std::size_t i = 0; i < sockets.size(); ++i) {
      ::dup2(high[i], 3 + static_cast<int>(i));
      names += (i ? ":" : "") + sockets[i].name;
    }
    ::setenv("SOFTHSM2_CONF", token_.conf.c_str(), 1);
    ::setenv("LISTEN_PID", std::to_string(::getpid()).c_str(), 1);
    ::setenv("LISTEN_FDS", std::to_string(sockets.size()).c_str(), 1);
    if (names.find_first_not_of(':') != std::string::npos) ::setenv("LISTEN_FDNAMES", names.c_str(), 1);
    ::setenv("NOTIFY_SOCKET", notify_socket.c_str(), 1);
    if (!watchdog_usec.empty()) ::setenv("WATCHDOG_USEC", watchdog_usec.c_str(), 1);
    int log = ::open((dir() + "/custodyd.log").c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
    ::dup2(log, 1);
    ::dup2(log, 2);
    ::execl(CUSTODYD_PATH, "custodyd", "--config", config().c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }

  // SIGTERM; the exit status (-1 for a signal or a timeout).
  int terminate() {
    ::kill(pid_, SIGTERM);
    return wait_exit();
  }
  int wait_exit(std::chrono::seconds timeout = std::chrono::seconds(20)) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
      }
      ::usleep(10'000);
    }
    return -1;
  }

 private:
  TempDir dir_;
  TokenFiles token_;
  pid_t pid_ = -1;
};

struct SocketFile {
  mode_t mode;
  gid_t gid;
  ino_t inode;
};
SocketFile stat_socket(const std::string& path) {
  struct stat st {};
  EXPECT_EQ(::stat(path.c_str(), &st), 0) << path << ": " << std::strerror(errno);
  return {st.st_mode & 07777, st.st_gid, st.st_ino};
}

int status_of(const std::string& socket, const std::string& method, const std::string& target) {
  client::UnixHttpClient c(socket, std::chrono::seconds(5));
  auto r = c.call(method, target);
  return r ? r->status : -1;
}

TEST(SystemdActivation, ServesBothPassedSocketsKeepingTheirModeAndGroupAndNotifiesReadyAndStopping) {
  ActivatedDaemon d;
  NotifySocket notify(d.dir() + "/notify.sock");
  // Modes and group the config does not ask for (it says 0600, no group): only the unit set them.
  const int service_fd = make_listening_socket(d.service_path(), 0666, kNogroup);
  const int admin_fd = make_listening_socket(d.admin_path(), 0660, kNogroup);
  const auto service_before = stat_socket(d.service_path());
  const auto admin_before = stat_socket(d.admin_path());
  // Passed in the order opposite to the config's, so that only the names can place them.
  d.start({{admin_fd, "admin"}, {service_fd, "service"}}, notify.path(), "");

  ASSERT_TRUE(notify.wait_for("READY=1")) << d.log();
  std::string ready;
  for (const auto& m : notify.messages())
    if (m.find("READY=1") != std::string::npos) ready = m;
  EXPECT_NE(ready.find("STATUS=serving 0 keys"), std::string::npos) << ready;

  // Both sockets are served, each by its own listener: the admin routes answer only on admin.
  EXPECT_EQ(status_of(d.service_path(), "GET", "/v1/health"), 200) << d.log();
  EXPECT_EQ(status_of(d.admin_path(), "GET", "/v1/admin/requests"), 200) << d.log();
  EXPECT_EQ(status_of(d.service_path(), "GET", "/v1/admin/requests"), 404);

  for (auto [path, before] : {std::pair{d.service_path(), service_before}, std::pair{d.admin_path(), admin_before}}) {
    const auto now = stat_socket(path);
    EXPECT_EQ(now.mode, before.mode) << path << ": custodyd changed the mode of a socket systemd passed";
    EXPECT_EQ(now.gid, kNogroup) << path;
    EXPECT_EQ(now.inode, before.inode) << path << ": custodyd bound a new socket instead of serving the passed one";
  }

  EXPECT_EQ(d.terminate(), 0) << d.log();
  EXPECT_TRUE(notify.wait_for("STOPPING=1", std::chrono::seconds(1)));
  ::close(service_fd);
  ::close(admin_fd);
}

// The .socket unit keeps listening across restarts of the service: the daemon must not remove
// the socket files it was given, or the next start would serve sockets nobody can reach.
TEST(SystemdActivation, LeavesPassedSocketFilesInPlaceWhenItStops) {
  ActivatedDaemon d;
  NotifySocket notify(d.dir() + "/notify.sock");
  const int service_fd = make_listening_socket(d.service_path(), 0660, kNogroup);
  const int admin_fd = make_listening_socket(d.admin_path(), 0660, kNogroup);
  const auto service_before = stat_socket(d.service_path());
  d.start({{service_fd, "service"}, {admin_fd, "admin"}}, notify.path(), "");
  ASSERT_TRUE(notify.wait_for("READY=1")) << d.log();
  ASSERT_EQ(d.terminate(), 0) << d.log();
  EXPECT_EQ(stat_socket(d.service_path()).inode, service_before.inode);
  EXPECT_EQ(::access(d.admin_path().c_str(), F_OK), 0) << "custodyd removed the admin socket systemd passed";
  ::close(service_fd);
  ::close(admin_fd);
}

TEST(SystemdActivation, MatchesAnUnnamedSocketByPathAndBindsTheSocketNotPassed) {
  ActivatedDaemon d;
  NotifySocket notify(d.dir() + "/notify.sock");
  const int service_fd = make_listening_socket(d.service_path(), 0666, kNogroup);
  d.start({{service_fd, ""}}, notify.path(), "");
  ASSERT_TRUE(notify.wait_for("READY=1")) << d.log();
  EXPECT_EQ(status_of(d.service_path(), "GET", "/v1/health"), 200) << d.log();
  EXPECT_EQ(status_of(d.admin_path(), "GET", "/v1/admin/requests"), 200) << d.log();
  EXPECT_EQ(stat_socket(d.service_path()).mode, 0666u);
  EXPECT_EQ(stat_socket(d.admin_path()).mode, 0600u) << "the admin socket is bound by custodyd as configured";
  EXPECT_EQ(d.terminate(), 0) << d.log();
  ::close(service_fd);
}

TEST(SystemdActivation, RefusesToStartWithASocketItWouldNotServe) {
  ActivatedDaemon d;
  NotifySocket notify(d.dir() + "/notify.sock");
  const int stray_fd = make_listening_socket(d.dir() + "/other.sock", 0660, kNogroup);
  d.start({{stray_fd, "metrics"}}, notify.path(), "");
  EXPECT_EQ(d.wait_exit(), 1);
  EXPECT_NE(d.log().find("neither sockets.service.path nor sockets.admin.path"), std::string::npos) << d.log();
  EXPECT_FALSE(notify.wait_for("READY=1", std::chrono::seconds(0)));
  ::close(stray_fd);
}

// Clients find the daemon through the configured path: a named socket bound elsewhere would
// leave them knocking on a file nobody serves.
TEST(SystemdActivation, RefusesANamedSocketBoundAtAnotherPathThanConfigured) {
  ActivatedDaemon d;
  NotifySocket notify(d.dir() + "/notify.sock");
  const int elsewhere_fd = make_listening_socket(d.dir() + "/elsewhere.sock", 0660, kNogroup);
  d.start({{elsewhere_fd, "service"}}, notify.path(), "");
  EXPECT_EQ(d.wait_exit(), 1);
  EXPECT_NE(d.log().find("make ListenStream= and sockets.service.path agree"), std::string::npos) << d.log();
  ::close(elsewhere_fd);
}

TEST(SystemdActivation, PingsTheWatchdogWhileServing) {
  ActivatedDaemon d;
  NotifySocket notify(d.dir() + "/notify.sock");
  const int service_fd = make_listening_socket(d.service_path(), 0660, kNogroup);
  const int admin_fd = make_listening_socket(d.admin_path(), 0660, kNogroup);
  d.start({{service_fd, "service"}, {admin_fd, "admin"}}, notify.path(), "200000");  // WatchdogSec=200ms
  ASSERT_TRUE(notify.wait_for("READY=1")) << d.log();
  // Pings keep coming after READY (every 100 ms), not only once at start.
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(notify.wait_for("WATCHDOG=1", std::chrono::seconds(5))) << "ping " << i;
  EXPECT_EQ(d.terminate(), 0) << d.log();
  ::close(service_fd);
  ::close(admin_fd);
}

// `systemd-analyze security` scores the sandbox of the shipped unit; 2.0 and below is "OK".
TEST(SystemdUnit, ShippedServiceUnitIsRatedAtMostTwoBySystemdAnalyzeSecurity) {
  const std::string unit = std::string(CUSTODY_SOURCE_DIR) + "/packaging/systemd/custodyd.service";
  std::unique_ptr<FILE, int (*)(FILE*)> p(::popen(("systemd-analyze security --offline=yes --no-pager " + unit + " 2>&1").c_str(), "r"),
                                          ::pclose);
  ASSERT_TRUE(p);
  std::string out;
  std::array<char, 4096> buf{};
  while (std::size_t n = std::fread(buf.data(), 1, buf.size(), p.get())) out.append(buf.data(), n);
  std::smatch m;
  ASSERT_TRUE(std::regex_search(out, m, std::regex(R"(Overall exposure level for custodyd\.service: ([0-9]+\.[0-9]+))")))
      << out;
  const double exposure = std::stod(m[1].str());
  EXPECT_LE(exposure, 2.0) << out;
  RecordProperty("exposure", m[1].str());
}

}  // namespace
}  // namespace custody::test
