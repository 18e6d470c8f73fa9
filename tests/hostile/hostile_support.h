#pragma once
// Tools for the hostile suite: raw sockets that send exact bytes and read one answer, children
// that act as other local users, a well-behaved client that measures its latency while an attack
// runs, and the checks every attack ends with (alive, serving, bounded memory, audit chain).
#include <sys/types.h>

#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <chrono>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "tests/support/daemon_process.h"

namespace custody::hostile {

using namespace std::chrono_literals;

// How many times slower this build runs the daemon: 1, or 2 under ASan, 5 under TSan (the
// daemon and the tests are built alike).
int sanitizer_slowdown();
// The bound this suite holds a well-behaved client's p99 latency to while an attack runs: 300 ms
// on a plain build, times sanitizer_slowdown().
std::chrono::milliseconds p99_bound();

// One HTTP response as it came off the wire.
struct RawResponse {
  int status = 0;  // 0: no complete answer
  std::map<std::string, std::string> headers;  // names in lower case
  std::string body;
  std::string header(const std::string& lower_case_name) const;
  boost::json::value json() const;  // null when the body is not JSON
};

// The error code of a contract error body, or "".
std::string error_code(const RawResponse& r);

// A client socket that sends exactly the bytes it is given.
class RawConnection {
 public:
  explicit RawConnection(const std::string& socket_path);
  ~RawConnection();
  RawConnection(const RawConnection&) = delete;
  RawConnection& operator=(const RawConnection&) = delete;

  bool connected() const { return fd_ >= 0; }
  int fd() const { return fd_; }
  // Sends every byte; false once the daemon has closed or the send timed out.
  bool send(std::string_view bytes, std::chrono::milliseconds timeout = 3s);
  // Streams `total` bytes made by `fill` (called with a buffer to fill) until the daemon stops
  // taking them; returns how many the kernel accepted.
  std::size_t stream(std::size_t total, const std::function<void(std::string&)>& fill,
                     std::chrono::milliseconds stall_timeout = 3s);
  void shutdown_send();
  // Reads one response (status line, headers, Content-Length body); what follows it stays
  // buffered for the next call. status 0 when none arrives before the timeout or the close.
  RawResponse read_response(std::chrono::milliseconds timeout = 5s);
  // True when the daemon closes the connection (end of stream or reset) within the timeout;
  // any bytes it sends meanwhile are appended to `extra`.
  bool closed_within(std::chrono::milliseconds timeout, std::string* extra = nullptr);
  // Bytes received and not yet returned by read_response.
  const std::string& unread() const { return buffer_; }

 private:
  // One recv into buffer_; false at end of stream, reset or timeout.
  bool receive_some(std::chrono::steady_clock::time_point deadline);
  int fd_ = -1;
  bool ended_ = false;
  std::string buffer_;
};

// Sends the bytes on a new connection and reads one answer and whether the daemon then closed.
struct Exchange {
  RawResponse response;
  bool closed_after = false;
};
Exchange raw_exchange(const std::string& socket_path, std::string_view bytes, std::chrono::milliseconds timeout = 5s);

// Sends the bytes on a new connection and reads one answer, leaving the connection as it is.
RawResponse send_request(const std::string& socket_path, std::string_view bytes, std::chrono::milliseconds timeout = 5s);

// A request with Content-Length framing.
std::string http_request(const std::string& method, const std::string& target, const std::string& body = "",
                         const std::vector<std::string>& extra_headers = {});

// Expects the contract's error answer: status, code, message, request_id equal to X-Request-Id,
// and Retry-After on 429 and 503.
void expect_contract_error(const RawResponse& r, int status, std::string_view code);

// A forked child acting as another local user: primary and only group nogroup (65534), so the
// service socket's group lets it in. The body runs in the child; it calls ready() once its attack
// is in place and may loop until released(). Its returned text reaches the parent through result().
class ChildControl {
 public:
  void ready();
  bool released();        // the parent has called release()
  void wait_released();
 private:
  friend class AsUid;
  int to_parent_ = -1, from_parent_ = -1;
};

class AsUid {
 public:
  AsUid(uid_t uid, std::function<std::string(ChildControl&)> body);
  ~AsUid();
  AsUid(const AsUid&) = delete;
  AsUid& operator=(const AsUid&) = delete;

  // Waits for the child's ready(); false if it ended or timed out first.
  bool wait_ready(std::chrono::milliseconds timeout = 20s);
  void release();
  // Releases the child, waits for it and returns what its body returned ("" if it died).
  std::string result(std::chrono::milliseconds timeout = 20s);

 private:
  pid_t pid_ = -1;
  int ready_fd_ = -1, release_fd_ = -1;
  std::string result_;
  bool reaped_ = false;
};

// Lets other uids reach the daemon's sockets (its directory is 0700 by default).
void open_daemon_dir_to_others(const test::Daemon& d);

// A well-behaved client: n small wraps one after another on one kept-alive connection.
struct Latencies {
  std::vector<double> ms;  // one per request, in milliseconds
  int failures = 0;        // answers other than 200, or no answer
  double p99() const;
  double max() const;
  std::string describe() const;  // count, p50, p99 and the slowest few, for failure messages
};
Latencies measure_wraps(const std::string& socket_path, int n, const std::string& key = "demo");
// As measure_wraps, but until `stop` returns true (checked between requests) or n requests.
Latencies measure_wraps_while(const std::string& socket_path, int n, const std::function<bool()>& keep_going,
                              const std::string& key = "demo");
// p99 within `bound` (p99_bound() unless given), at least `min_samples` measured, none failed.
void expect_p99_within_bound(const Latencies& l, const char* during, std::chrono::milliseconds bound = p99_bound(),
                             std::size_t min_samples = 20);

// /proc/<pid>/status fields in KiB (VmRSS, VmHWM).
std::size_t proc_status_kib(pid_t pid, const char* field);

// The sum of every sample of a metric (with or without labels); -1 when it cannot be read.
// Read on a fresh admin connection, or on one the caller opened before a flood filled the budgets.
double metric_sum(const test::Daemon& d, const std::string& name);
double metric_sum(RawConnection& c, const std::string& name);

// The process exists and a fresh connection gets a wrap done.
void expect_alive_and_serving(test::Daemon& d, const std::string& key = "demo");

// The audit records written so far, while the daemon may be writing more (a partly written last
// line is left out).
std::vector<boost::json::object> audit_records_so_far(const test::Daemon& d);

// `custodyctl audit verify` accepts the log's complete lines as they are now, checkpoints checked
// against the attestation key the daemon reports.
void expect_audit_chain_verifies(test::Daemon& d);

// A key policy: each uid with its operations.
std::string policy(const std::vector<std::pair<uid_t, std::vector<std::string>>>& rules);

// One daemon for all the tests of a suite, with "demo" (aes-256-gcm) that the test process may
// use; after every test it must still be alive and serving, and its audit chain must verify.
// Suite supplies `static test::DaemonOptions daemon_options()`.
template <class Suite>
class SharedDaemonTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    daemon_ = new test::Daemon(Suite::daemon_options());
    ASSERT_EQ(daemon_->create_key("demo", "aes-256-gcm", test::allow_me_everything()), 201);
  }
  static void TearDownTestSuite() {
    delete daemon_;
    daemon_ = nullptr;
  }
  void TearDown() override {
    expect_alive_and_serving(*daemon_);
    expect_audit_chain_verifies(*daemon_);
  }
  static inline test::Daemon* daemon_ = nullptr;
};

}  // namespace custody::hostile
