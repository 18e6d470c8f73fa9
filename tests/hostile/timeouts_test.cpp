// Slow peers: a connection that never speaks, a slowloris header or body, a kept-alive connection
// left idle. Each is closed on its own deadline (limits.first_byte_timeout, request_timeout,
// idle_timeout), and a slowloris flood from another uid does not slow a well-behaved client.
#include <gtest/gtest.h>

#include <thread>

#include "tests/hostile/hostile_support.h"

using namespace custody;
using namespace custody::hostile;
using namespace custody::test;

namespace {

// Short deadlines keep the suite fast; the idle timeout is longer than the others so that each
// deadline is told apart from the idle one a daemon without it would fall back on.
constexpr std::chrono::milliseconds kFirstByte = 300ms, kRequest = 800ms, kIdle = 3s;
// Slack for scheduling on a loaded CI machine (and for slower sanitizer builds).
const std::chrono::milliseconds kSlack = 1200ms * sanitizer_slowdown();

class SlowPeers : public SharedDaemonTest<SlowPeers> {
 public:
  static DaemonOptions daemon_options() {
    DaemonOptions o;
    o.service_group = "nogroup";
    o.extra_limits = "  first_byte_timeout: 300ms\n  request_timeout: 800ms\n  idle_timeout: 3s\n";
    return o;
  }

 protected:
  // Sends `bytes` one at a time, `gap` apart, until the daemon closes; the time from the first
  // byte to the close, and whatever the daemon answered.
  static std::pair<std::chrono::milliseconds, std::string> trickle(const std::string& bytes, std::chrono::milliseconds gap) {
    RawConnection c(daemon_->service_socket());
    const auto start = std::chrono::steady_clock::now();
    std::string answer;
    for (std::size_t i = 0; i < bytes.size(); ++i) {
      if (!c.send(bytes.substr(i, 1))) break;
      if (c.closed_within(gap, &answer)) break;
    }
    c.closed_within(5s, &answer);
    return {std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start), answer};
  }
};

}  // namespace

TEST_F(SlowPeers, AConnectionThatNeverSpeaksIsClosedWithoutAnAnswer) {
  for (const auto& socket : {daemon_->service_socket(), daemon_->admin_socket()}) {
    SCOPED_TRACE(socket);
    RawConnection c(socket);
    ASSERT_TRUE(c.connected());
    std::string answer;
    EXPECT_TRUE(c.closed_within(kFirstByte + kSlack, &answer)) << "still open after first_byte_timeout";
    EXPECT_EQ(answer, "");
  }
}

TEST_F(SlowPeers, ASlowlorisHeaderIsCutOffAtTheRequestTimeout) {
  const std::string request = "POST /v1/keys/demo/wrap HTTP/1.1\r\nHost: custody\r\nX-Slow: " + std::string(200, 's') +
                              "\r\nContent-Length: 20\r\n\r\n{\"plaintext\":\"aGk=\"}";
  auto [took, answer] = trickle(request, 50ms);
  EXPECT_LE(took, kRequest + kSlack) << "a request trickled byte by byte lived " << took.count() << " ms";
  EXPECT_EQ(answer.rfind("HTTP/1.1 2", 0), std::string::npos) << answer;
}

TEST_F(SlowPeers, ASlowlorisBodyIsCutOffAtTheRequestTimeout) {
  RawConnection c(daemon_->service_socket());
  const auto start = std::chrono::steady_clock::now();
  ASSERT_TRUE(c.send("POST /v1/keys/demo/wrap HTTP/1.1\r\nHost: custody\r\nContent-Length: 1000\r\n\r\n{\"plaintext\":\""));
  std::string answer;
  bool closed = false;
  for (int i = 0; i < 100 && !closed; ++i) closed = !c.send("A") || c.closed_within(50ms, &answer);
  closed = closed || c.closed_within(5s, &answer);
  const auto took = std::chrono::steady_clock::now() - start;
  EXPECT_TRUE(closed);
  EXPECT_LE(took, kRequest + kSlack);
  EXPECT_EQ(answer.rfind("HTTP/1.1 2", 0), std::string::npos) << answer;
}

TEST_F(SlowPeers, AKeptAliveConnectionServesAfterAPauseAndClosesWhenIdle) {
  RawConnection c(daemon_->service_socket());
  ASSERT_TRUE(c.send(http_request("POST", "/v1/keys/demo/wrap", R"({"plaintext":"aGk="})")));
  ASSERT_EQ(c.read_response().status, 200);
  // Longer than the first-byte and request deadlines, shorter than the idle one: between
  // requests only idle_timeout applies.
  EXPECT_FALSE(c.closed_within(kRequest + 200ms)) << "a kept-alive connection closed before idle_timeout";
  ASSERT_TRUE(c.send(http_request("POST", "/v1/keys/demo/wrap", R"({"plaintext":"aGk="})")));
  ASSERT_EQ(c.read_response().status, 200);
  std::string answer;
  EXPECT_TRUE(c.closed_within(kIdle + kSlack, &answer)) << "an idle connection outlived idle_timeout";
  EXPECT_EQ(answer, "");
}

TEST_F(SlowPeers, ASlowlorisFloodFromAnotherUidDoesNotSlowOthers) {
  if (::getuid() != 0) GTEST_SKIP() << "needs root to act as another uid";
  open_daemon_dir_to_others(*daemon_);
  const std::string socket = daemon_->service_socket();
  // 30 connections (under the per-uid share) each sending a byte of a header now and then,
  // reopened as the daemon cuts them off.
  AsUid attacker(65534, [socket](ChildControl& control) {
    const std::string header = "POST /v1/keys/demo/wrap HTTP/1.1\r\nHost: custody\r\nX-Slow: " + std::string(10000, 's');
    std::vector<std::unique_ptr<RawConnection>> conns(30);
    std::vector<std::size_t> sent(30, 0);
    int reopened = 0;
    bool said_ready = false;
    while (!control.released()) {
      for (std::size_t i = 0; i < conns.size(); ++i) {
        if (!conns[i] || !conns[i]->send(header.substr(sent[i] % header.size(), 1), 10ms)) {
          conns[i] = std::make_unique<RawConnection>(socket);
          sent[i] = 0;
          ++reopened;
          continue;
        }
        ++sent[i];
      }
      if (!said_ready) {
        control.ready();
        said_ready = true;
      }
      std::this_thread::sleep_for(20ms);  // the attack's own pace: a byte per connection now and then
    }
    return std::to_string(reopened);
  });
  ASSERT_TRUE(attacker.wait_ready());
  // Measure for longer than the request deadline, so that the daemon cuts the attack's
  // connections off at least once meanwhile.
  const auto until = std::chrono::steady_clock::now() + kRequest + kSlack;
  auto latencies = measure_wraps_while(socket, 1'000'000, [&] { return std::chrono::steady_clock::now() < until; });
  const int reopened = std::stoi("0" + attacker.result());
  expect_p99_within_bound(latencies, "a slowloris flood of 30 connections from uid 65534");
  EXPECT_GT(reopened, 30) << "the daemon never cut a slowloris connection off";
}
