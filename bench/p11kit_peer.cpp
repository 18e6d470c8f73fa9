#include "bench/p11kit_peer.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <thread>

#include "bench/token_timing.h"

namespace custody::bench {

namespace {

// `p11-kit server` in the foreground on its own socket, killed when this goes away.
class P11KitServer {
 public:
  P11KitServer() = default;
  P11KitServer(const P11KitServer&) = delete;
  P11KitServer& operator=(const P11KitServer&) = delete;
  ~P11KitServer() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGTERM);
    ::waitpid(pid_, nullptr, 0);
  }

  // The server's address (P11_KIT_SERVER_ADDRESS), or why it did not start.
  Expected<std::string, std::string> start(const test::TokenFiles& token, const std::string& work_dir) {
    const std::string socket = work_dir + "/p11-kit-server.sock";
    const std::string output = work_dir + "/p11-kit-server.out";
    const std::string uri = "pkcs11:token=" + token.label;
    pid_ = ::fork();
    if (pid_ < 0) return unexpected(std::string("fork failed"));
    if (pid_ == 0) {
      ::setenv("SOFTHSM2_CONF", token.conf.c_str(), 1);
      const int out = ::open(output.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
      if (out >= 0) {
        ::dup2(out, 1);
        ::dup2(out, 2);
      }
      ::execlp("p11-kit", "p11-kit", "server", "-f", "-n", socket.c_str(), "--provider", CUSTODY_SOFTHSM_MODULE,
               uri.c_str(), static_cast<char*>(nullptr));
      ::_exit(127);
    }
    // It prints P11_KIT_SERVER_ADDRESS=…; once it has, the socket is listening.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (std::chrono::steady_clock::now() < deadline) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        const bool missing = WIFEXITED(status) && WEXITSTATUS(status) == 127;
        return unexpected(missing ? std::string("`p11-kit` is not installed (Debian package p11-kit)")
                                  : "`p11-kit server` exited at start: " + test::read_file(output).substr(0, 300));
      }
      const std::string text = test::read_file(output);
      if (const auto at = text.find("P11_KIT_SERVER_ADDRESS="); at != std::string::npos) {
        const auto end = text.find_first_of(";\n", at);
        if (end != std::string::npos) return text.substr(at + 23, end - at - 23);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return unexpected(std::string("`p11-kit server` printed no address within 10 s"));
  }

 private:
  pid_t pid_ = -1;
};

}  // namespace

std::string p11kit_row_name(unsigned threads) { return "HMAC-SHA256 t=" + std::to_string(threads); }

void run_p11kit(const test::TokenFiles& token, const std::string& work_dir, double seconds, Report& report) {
  if (!std::filesystem::exists(kP11KitClientModule))
    return report.add_missing("p11kit", std::string(kP11KitClientModule) + " is not installed (Debian package p11-kit-modules)");
  P11KitServer server;
  auto address = server.start(token, work_dir);
  if (!address) return report.add_missing("p11kit", address.error());
  ::setenv("P11_KIT_SERVER_ADDRESS", address->c_str(), 1);
  auto opened = open_token(kP11KitClientModule, token.label, token.pin);
  if (!opened) return report.add_missing("p11kit", "p11-kit-client.so cannot use the token: " + opened.error());
  auto key = make_token_key(*opened->session, BenchKeyKind::hmac_sha256, "custody-bench-p11kit-hmac");
  if (!key) return report.add_missing("p11kit", "cannot make the HMAC key through p11-kit: " + key.error());
  CK_FUNCTION_LIST* api = opened->module->api();
  for (const unsigned threads : kP11KitThreads) {
    Row row = time_token_calls(*opened, threads, seconds, "p11kit", p11kit_row_name(threads), hmac_call(api, *key));
    print_progress(row);
    report.add(std::move(row));
  }
  if (auto ok = opened->session->destroy_object(*key); !ok)
    std::fprintf(stderr, "p11kit: cannot destroy the run's HMAC key: %s\n", ok.error().describe().c_str());
}

}  // namespace custody::bench
