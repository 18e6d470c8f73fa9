#include "tests/support/postgres_cluster.h"

#include <fcntl.h>
#include <grp.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>

namespace custody::test {
namespace {

constexpr uid_t kNobody = 65534;
constexpr gid_t kNogroup = 65534;
constexpr const char* kSuperuser = "custody";

bool as_root() { return ::geteuid() == 0; }

// Hands a path to nobody, so the cluster's programs (run as nobody under root) can use it.
Expected<void, std::string> give_to_nobody(const std::string& path) {
  if (!as_root()) return {};
  if (::chown(path.c_str(), kNobody, kNogroup) != 0) return unexpected("chown " + path + ": " + std::strerror(errno));
  return {};
}

std::string random_password() {
  std::random_device rd;
  std::string out;
  const char* digits = "0123456789abcdef";
  for (int i = 0; i < 32; ++i) out += digits[rd() % 16];
  return out;
}

Expected<void, std::string> write_private(const std::string& path, const std::string& content) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return unexpected("open " + path + ": " + std::strerror(errno));
  const bool ok = ::write(fd, content.data(), content.size()) == static_cast<ssize_t>(content.size());
  ::close(fd);
  if (!ok) return unexpected("write " + path);
  return {};
}

}  // namespace

std::string PostgresCluster::bin_dir() {
  const char* env = std::getenv("CUSTODY_PG_BINDIR");
  return env && *env ? env : "/usr/lib/postgresql/15/bin";
}

std::string PostgresCluster::unavailable_reason() {
  for (const char* tool : {"initdb", "pg_ctl", "postgres"}) {
    const std::string path = bin_dir() + "/" + tool;
    if (::access(path.c_str(), X_OK) != 0)
      return path + " is missing (install Debian's postgresql package: scripts/bootstrap)";
  }
  return {};
}

Expected<void, std::string> PostgresCluster::run_tool(const std::vector<std::string>& argv,
                                                      const std::string& log) const {
  const std::string program = bin_dir() + "/" + argv[0];
  const std::string log_path = dir_.path() + "/" + log;
  std::vector<char*> args;
  // argv[0] the full path: initdb and pg_ctl find postgres beside themselves through it.
  args.push_back(const_cast<char*>(program.c_str()));
  for (std::size_t i = 1; i < argv.size(); ++i) args.push_back(const_cast<char*>(argv[i].c_str()));
  args.push_back(nullptr);
  char path_env[] = "PATH=/usr/bin:/bin";
  char locale_env[] = "LC_ALL=C";
  char* env[] = {path_env, locale_env, nullptr};
  const pid_t pid = ::fork();
  if (pid < 0) return unexpected(std::string("fork: ") + std::strerror(errno));
  if (pid == 0) {
    // Only async-signal-safe calls from here to exec.
    const int fd = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || ::dup2(fd, 1) < 0 || ::dup2(fd, 2) < 0) ::_exit(120);
    // The server pg_ctl leaves running must not hold the test's pipes (ctest waits for them).
    ::close_range(3, ~0U, 0);
    if (::chdir(dir_.path().c_str()) != 0) ::_exit(121);
    if (as_root() && (::setgroups(0, nullptr) != 0 || ::setgid(kNogroup) != 0 || ::setuid(kNobody) != 0)) ::_exit(122);
    ::execve(program.c_str(), args.data(), env);
    ::_exit(127);
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0)
    if (errno != EINTR) return unexpected(std::string("waitpid: ") + std::strerror(errno));
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return {};
  return unexpected(argv[0] + " failed (status " + std::to_string(status) + "): " + read_file(log_path));
}

Expected<std::unique_ptr<PostgresCluster>, std::string> PostgresCluster::start() {
  if (auto reason = unavailable_reason(); !reason.empty()) return unexpected(reason);
  std::unique_ptr<PostgresCluster> c(new PostgresCluster());
  const std::string& dir = c->dir_.path();
  if (::chmod(dir.c_str(), 0700) != 0) return unexpected("chmod " + dir);
  if (auto r = give_to_nobody(dir); !r) return unexpected(r.error());
  c->data_dir_ = dir + "/data";
  c->password_file_ = dir + "/client.pw";
  const std::string password = random_password();
  const std::string initdb_pw = dir + "/initdb.pw";
  for (const auto& file : {initdb_pw, c->password_file_})
    if (auto r = write_private(file, password + "\n"); !r) return unexpected(r.error());
  if (auto r = give_to_nobody(initdb_pw); !r) return unexpected(r.error());
  if (auto r = c->run_tool({"initdb", "-D", c->data_dir_, "-U", kSuperuser, "--pwfile=" + initdb_pw, "-A",
                            "scram-sha-256", "-E", "UTF8", "--no-locale", "--no-sync", "--no-instructions"},
                           "initdb.log");
      !r)
    return unexpected(r.error());
  std::ofstream conf(c->data_dir_ + "/postgresql.conf", std::ios::app);
  conf << "\n# custody tests: Unix socket only, nothing durable needed\n"
       << "listen_addresses = ''\n"
       << "unix_socket_directories = '" << dir << "'\n"
       << "port = 5432\nmax_connections = 40\nshared_buffers = 16MB\n"
       << "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n";
  conf.close();
  if (!conf) return unexpected("cannot write postgresql.conf");
  if (auto r = c->start_reaper(); !r) return unexpected(r.error());
  if (auto r = c->restart(); !r) return unexpected(r.error());
  return c;
}

Expected<void, std::string> PostgresCluster::start_reaper() {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return unexpected(std::string("pipe2: ") + std::strerror(errno));
  // Everything the child needs is built before fork: after it, only async-signal-safe calls.
  const std::string pg_ctl = bin_dir() + "/pg_ctl";
  std::vector<std::string> stop_args = {pg_ctl, "-D", data_dir_, "-m", "immediate", "-w", "stop"};
  std::vector<std::string> rm_args = {"/bin/rm", "-rf", dir_.path()};
  std::vector<char*> stop_argv, rm_argv;
  for (auto& a : stop_args) stop_argv.push_back(a.data());
  for (auto& a : rm_args) rm_argv.push_back(a.data());
  stop_argv.push_back(nullptr);
  rm_argv.push_back(nullptr);
  char path_env[] = "PATH=/usr/bin:/bin";
  char* env[] = {path_env, nullptr};
  const std::string dir = dir_.path();
  const pid_t pid = ::fork();
  if (pid < 0) {
    ::close(fds[0]);
    ::close(fds[1]);
    return unexpected(std::string("fork: ") + std::strerror(errno));
  }
  if (pid == 0) {
    ::close(fds[1]);
    const int devnull = ::open("/dev/null", O_RDWR);
    if (devnull >= 0) {
      ::dup2(devnull, 0);
      ::dup2(devnull, 1);
      ::dup2(devnull, 2);
    }
    // Off the test's pipes, so ctest does not wait for this child.
    if (fds[0] != 3) ::dup2(fds[0], 3);
    ::close_range(4, ~0U, 0);
    char byte;
    for (;;) {
      const ssize_t n = ::read(3, &byte, 1);
      if (n == 0 || (n < 0 && errno != EINTR)) break;
    }
    const pid_t stopper = ::fork();
    if (stopper == 0) {
      if (::chdir(dir.c_str()) != 0) ::_exit(121);
      if (as_root() && (::setgroups(0, nullptr) != 0 || ::setgid(kNogroup) != 0 || ::setuid(kNobody) != 0))
        ::_exit(122);
      ::execve(stop_argv[0], stop_argv.data(), env);
      ::_exit(127);
    }
    if (stopper > 0) {
      int status;
      ::waitpid(stopper, &status, 0);
    }
    ::execve(rm_argv[0], rm_argv.data(), env);
    ::_exit(127);
  }
  ::close(fds[0]);
  reaper_ = pid;
  reaper_pipe_ = fds[1];
  return {};
}

void PostgresCluster::stop_reaper() {
  if (reaper_ < 0) return;
  // The cluster is being stopped in order: the reaper has nothing to do.
  ::kill(reaper_, SIGKILL);
  int status;
  ::waitpid(reaper_, &status, 0);
  ::close(reaper_pipe_);
  reaper_ = -1;
}

Expected<void, std::string> PostgresCluster::restart() {
  if (auto r = run_tool({"pg_ctl", "-D", data_dir_, "-l", dir_.path() + "/server.log", "-w", "-t", "30", "start"},
                        "pg_ctl-start.log");
      !r)
    return unexpected(r.error() + "\nserver log:\n" + read_file(dir_.path() + "/server.log"));
  running_ = true;
  return {};
}

Expected<void, std::string> PostgresCluster::stop() {
  if (!running_) return {};
  auto r = run_tool({"pg_ctl", "-D", data_dir_, "-m", "fast", "-w", "-t", "30", "stop"}, "pg_ctl-stop.log");
  if (r) running_ = false;
  return r;
}

PostgresCluster::~PostgresCluster() {
  stop_reaper();
  if (running_ && !stop())
    (void)run_tool({"pg_ctl", "-D", data_dir_, "-m", "immediate", "-w", "stop"}, "pg_ctl-stop.log");
}

std::string PostgresCluster::dsn(const std::string& database) const {
  return "host=" + dir_.path() + " port=5432 dbname=" + database + " user=" + kSuperuser;
}

core::PgSettings PostgresCluster::settings(const std::string& database) const {
  return core::PgSettings{dsn(database), password_file_};
}

Expected<void, std::string> PostgresCluster::execute(const std::string& database, const std::string& sql) const {
  auto conn = core::PgConnection::open(settings(database));
  if (!conn) return unexpected(conn.error().message);
  if (auto r = (*conn)->script("test statement", sql.c_str()); !r) return unexpected(r.error().message);
  return {};
}

Expected<void, std::string> PostgresCluster::create_database(const std::string& name) {
  auto icu = execute(
      "postgres", "CREATE DATABASE " + name + " TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C'");
  if (icu) return {};
  return execute("postgres", "CREATE DATABASE " + name);
}

}  // namespace custody::test
