// The KMS v2 socket's operational side. Under systemd socket activation (systemd's own
// systemd-socket-activate binds the service, admin and kms sockets, FileDescriptorName
// service:admin:kms, and execs custodyd on the first connection) custodyd must serve the kms
// socket it was passed and refuse one it is not configured for; --check-config must check
// sockets.kms.path like the other sockets; and KMS calls must show in /metrics.
#include <gtest/gtest.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <grpcpp/create_channel.h>
#include <grpcpp/grpcpp.h>
#include <thread>

#include "api.grpc.pb.h"
#include "tests/support/daemon_process.h"

using namespace custody::test;

namespace {

using Clock = std::chrono::steady_clock;

constexpr char kKey[] = "k8s-secrets";

std::string socket_path(const Daemon& d, const char* name) { return d.dir() + "/" + name + ".sock"; }

// The harness's config (service and admin sockets) with the kms socket and section added.
void add_kms_to_config(Daemon& d) {
  std::string yaml = read_file(d.config_path());
  const auto admin = yaml.find("  admin: {path: ");
  ASSERT_NE(admin, std::string::npos);
  yaml.insert(yaml.find('\n', admin) + 1, "  kms: {path: " + socket_path(d, "kms") + ", mode: \"0600\"}\n");
  yaml += std::string("kms:\n  key: ") + kKey + "\n";
  write_file(d.config_path(), yaml);
}

// custodyd behind systemd-socket-activate with the three sockets; killed when the test ends.
class Activated {
 public:
  Activated(Daemon& d, const std::string& names) : d_(d) {
    pid_ = ::fork();
    if (pid_ < 0) throw std::runtime_error("fork");
    if (pid_ == 0) {
      const int log = ::open((d.dir() + "/activated.log").c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
      ::dup2(log, 1);
      ::dup2(log, 2);
      const std::string env = "SOFTHSM2_CONF=" + d.token().conf;
      const std::string fdnames = "--fdname=" + names;
      const std::string service = socket_path(d, "service"), admin = socket_path(d, "admin"), kms = socket_path(d, "kms");
      ::execlp("systemd-socket-activate", "systemd-socket-activate", "-l", service.c_str(), "-l", admin.c_str(), "-l",
               kms.c_str(), fdnames.c_str(), "-E", env.c_str(), CUSTODYD_PATH, "--config", d.config_path().c_str(),
               static_cast<char*>(nullptr));
      ::_exit(127);
    }
  }
  ~Activated() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  // The exit status once the process ends by itself within the timeout; -1 otherwise.
  int wait_exit(std::chrono::seconds timeout) {
    for (const auto deadline = Clock::now() + timeout; Clock::now() < deadline;) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return -1;
  }
  int terminate() {
    ::kill(pid_, SIGTERM);
    return wait_exit(std::chrono::seconds(20));
  }
  std::string log() const { return read_file(d_.dir() + "/activated.log"); }

 private:
  Daemon& d_;
  pid_t pid_ = -1;
};

ino_t inode_of(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 ? st.st_ino : 0;
}

// Waits until systemd-socket-activate has bound every socket.
bool sockets_bound(const Daemon& d) {
  for (const auto deadline = Clock::now() + std::chrono::seconds(10); Clock::now() < deadline;) {
    if (inode_of(socket_path(d, "service")) && inode_of(socket_path(d, "admin")) && inode_of(socket_path(d, "kms")))
      return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

// A daemon with the KMS key, stopped, its config given the kms socket when asked.
void prepare(Daemon& d, bool with_kms) {
  ASSERT_EQ(d.create_key(kKey, "aes-256-gcm", allow_me_everything()), 201);
  ASSERT_EQ(d.terminate(), 0);
  if (with_kms) add_kms_to_config(d);
}

}  // namespace

TEST(KmsSocketActivation, ServesThePassedKmsSocketAsItIs) {
  Daemon d;
  prepare(d, true);
  Activated activated(d, "service:admin:kms");
  ASSERT_TRUE(sockets_bound(d)) << activated.log();
  const ino_t kms_inode = inode_of(socket_path(d, "kms"));
  // The first connection starts custodyd: wait until it answers (gRPC's reconnect backoff is slower).
  bool up = false;
  for (const auto deadline = Clock::now() + std::chrono::seconds(20); !up && Clock::now() < deadline;) {
    custody::client::UnixHttpClient knock(socket_path(d, "service"), std::chrono::seconds(2));
    auto r = knock.call("GET", "/v1/health");
    up = r && r->status == 200;
    if (!up) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_TRUE(up) << activated.log();
  auto kms = v2::KeyManagementService::NewStub(
      grpc::CreateChannel("unix://" + socket_path(d, "kms"), grpc::InsecureChannelCredentials()));
  v2::StatusResponse st;
  grpc::Status s;
  for (const auto deadline = Clock::now() + std::chrono::seconds(20); Clock::now() < deadline;) {
    grpc::ClientContext c;
    c.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    c.set_wait_for_ready(true);
    s = kms->Status(&c, v2::StatusRequest{}, &st);
    if (s.ok()) break;
  }
  ASSERT_TRUE(s.ok()) << s.error_message() << "\n" << activated.log();
  EXPECT_EQ(st.version(), "v2");
  EXPECT_EQ(st.key_id(), std::string(kKey) + "/v1");
  EXPECT_EQ(inode_of(socket_path(d, "kms")), kms_inode) << "custodyd bound a new kms socket instead of the passed one";
  EXPECT_NE(activated.log().find("sockets.kms: serving the socket systemd passed for " + socket_path(d, "kms")),
            std::string::npos)
      << activated.log();
  kms.reset();
  EXPECT_EQ(activated.terminate(), 0) << activated.log();
}

TEST(KmsSocketActivation, RefusesAKmsSocketWhenTheConfigHasNoKmsSection) {
  Daemon d;
  prepare(d, false);
  Activated activated(d, "service:admin:kms");
  ASSERT_TRUE(sockets_bound(d)) << activated.log();
  // A knock on the service socket starts custodyd, which must refuse to run.
  custody::client::UnixHttpClient knock(socket_path(d, "service"), std::chrono::seconds(2));
  (void)knock.call("GET", "/v1/health");
  EXPECT_NE(activated.wait_exit(std::chrono::seconds(20)), 0) << activated.log();
  const std::string log = activated.log();
  EXPECT_NE(log.find("systemd passed a socket named 'kms'"), std::string::npos) << log;
  EXPECT_NE(log.find("the kms socket is off"), std::string::npos) << log;
}

TEST(KmsSocketStartup, CheckConfigChecksTheKmsSocketPathLikeTheOthers) {
  Daemon d;
  prepare(d, true);
  // A regular file where the kms socket should be: start-up would fail to bind it.
  write_file(socket_path(d, "kms"), "not a socket");
  const std::string out = d.dir() + "/check.out";
  const int status =
      run("SOFTHSM2_CONF=" + d.token().conf + " timeout 20 " + CUSTODYD_PATH + " --config " + d.config_path() +
          " --check-config > " + out + " 2>&1");
  EXPECT_NE(status, 0);
  EXPECT_NE(read_file(out).find("sockets.kms.path: " + socket_path(d, "kms") + " exists and is not a socket"),
            std::string::npos)
      << read_file(out);
}

namespace {

// The value of one exact sample line of the exposition (-1 when absent).
long sample(const std::string& exposition, const std::string& series) {
  const auto at = exposition.find("\n" + series + " ");
  return at == std::string::npos ? -1 : std::stol(exposition.substr(at + series.size() + 2));
}

}  // namespace

TEST(KmsSocketMetrics, KmsCallsAreCountedPerOperationAndOnTheKey) {
  Daemon d;
  prepare(d, true);
  d.start();
  auto kms = v2::KeyManagementService::NewStub(
      grpc::CreateChannel("unix://" + socket_path(d, "kms"), grpc::InsecureChannelCredentials()));
  auto bounded = [](grpc::ClientContext& c) { c.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10)); };
  v2::StatusResponse st;
  v2::EncryptRequest enc_req;
  enc_req.set_plaintext("a data encryption key seed");
  enc_req.set_uid("uid-1");
  v2::EncryptResponse sealed;
  {
    grpc::ClientContext c;
    bounded(c);
    ASSERT_TRUE(kms->Status(&c, v2::StatusRequest{}, &st).ok());
  }
  for (int i = 0; i < 2; ++i) {
    grpc::ClientContext c;
    bounded(c);
    ASSERT_TRUE(kms->Encrypt(&c, enc_req, &sealed).ok());
  }
  v2::DecryptRequest dec_req;
  dec_req.set_ciphertext(sealed.ciphertext());
  dec_req.set_key_id(sealed.key_id());
  dec_req.set_uid("uid-2");
  v2::DecryptResponse opened;
  {
    grpc::ClientContext c;
    bounded(c);
    ASSERT_TRUE(kms->Decrypt(&c, dec_req, &opened).ok());
  }
  dec_req.set_ciphertext("not a blob");
  {
    grpc::ClientContext c;
    bounded(c);
    EXPECT_FALSE(kms->Decrypt(&c, dec_req, &opened).ok());
  }
  auto r = d.service().call("GET", "/metrics");
  ASSERT_TRUE(r && r->status == 200);
  const std::string& m = r->body;
  EXPECT_EQ(sample(m, R"(custody_requests_total{socket="kms",operation="Status",code="200"})"), 1) << m;
  EXPECT_EQ(sample(m, R"(custody_requests_total{socket="kms",operation="Encrypt",code="200"})"), 2);
  EXPECT_EQ(sample(m, R"(custody_requests_total{socket="kms",operation="Decrypt",code="200"})"), 1);
  EXPECT_EQ(sample(m, R"(custody_requests_total{socket="kms",operation="Decrypt",code="400"})"), 1);
  EXPECT_EQ(sample(m, R"(custody_request_duration_seconds_count{socket="kms",operation="Encrypt"})"), 2);
  // The healthz probe of Status wraps and unwraps once itself: at least the calls made here.
  EXPECT_GE(sample(m, R"(custody_key_operations_total{key="k8s-secrets",operation="wrap",result="ok"})"), 2);
  EXPECT_EQ(sample(m, R"(custody_key_operations_total{key="k8s-secrets",operation="unwrap",result="invalid_ciphertext"})"), 1);
}
