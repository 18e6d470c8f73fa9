// Issue #9 findings 1 and 2: the chunked-trailer request that ended the daemon, and chunk
// extensions or trailers streamed without end. Both are refused early with bounded memory, and a
// body over limits.max_body_bytes is 413 however it is framed.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "tests/hostile/hostile_support.h"

using namespace custody;
using namespace custody::hostile;
using namespace custody::test;

namespace {

constexpr std::size_t kMiB = 1024 * 1024;
// What a refused stream may have got into the daemon's socket before it was cut off: 16 KiB of
// header allowance, a short lingering read (1 MiB at most) and the kernel's socket buffers.
constexpr std::size_t kStreamCutOffBound = 4 * kMiB;
// How much the daemon's peak resident memory may grow while four 100 MB streams hit it.
constexpr std::size_t kRssGrowthBoundKiB = 100 * 1024;

// Fills stream chunks with `unit` over and over, continuing where the previous chunk stopped.
std::function<void(std::string&)> repeat(const std::string& unit) {
  return [unit, at = std::size_t{0}](std::string& chunk) mutable {
    for (auto& c : chunk) c = unit[at++ % unit.size()];
  };
}

const std::string kChunkedHeader =
    "POST /v1/keys/demo/wrap HTTP/1.1\r\nHost: custody\r\nTransfer-Encoding: chunked\r\n\r\n";

class ChunkedAttacks : public ::testing::Test {
 protected:
  void SetUp() override {
    daemon_ = std::make_unique<Daemon>();
    ASSERT_EQ(daemon_->create_key("demo", "aes-256-gcm", allow_me_everything()), 201);
  }
  void TearDown() override {
    expect_alive_and_serving(*daemon_);
    expect_audit_chain_verifies(*daemon_);
  }
  std::unique_ptr<Daemon> daemon_;
};

}  // namespace

TEST_F(ChunkedAttacks, TheTrailerThatEndedTheDaemonGets400OnBothSockets) {
  // Finding 1, byte for byte; six of them stopped the packaged service for good.
  const std::string crash = "GET /v1/health HTTP/1.1\r\nHost: c\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: " +
                            std::string(65534, 'a') + "\r\n\r\n";
  for (const auto& socket : {daemon_->service_socket(), daemon_->admin_socket()}) {
    for (int i = 0; i < 6; ++i) {
      SCOPED_TRACE(socket + " #" + std::to_string(i));
      auto e = raw_exchange(socket, crash);
      ASSERT_TRUE(daemon_->running()) << "custodyd died:\n" << daemon_->log();
      expect_contract_error(e.response, 400, "invalid_argument");
      EXPECT_TRUE(e.closed_after);
    }
  }
}

TEST_F(ChunkedAttacks, HundredMegabyteExtensionsAndTrailersAreCutOffWithMemoryBounded) {
  const pid_t pid = daemon_->pid();
  const std::size_t peak_before = proc_status_kib(pid, "VmHWM");
  ASSERT_GT(peak_before, 0u);
  // Finding 2: four 100 MB requests at once, two in a chunk extension, two in trailers.
  struct Stream {
    std::string prefix;
    std::function<void(std::string&)> fill;
    std::size_t accepted = 0;
    RawResponse answer;
  };
  std::vector<Stream> streams = {
      {kChunkedHeader + "1;", repeat("a")},
      {kChunkedHeader + "1;e=", repeat("x")},
      {kChunkedHeader + "0\r\n", repeat("X-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n")},
      {kChunkedHeader + "0\r\nX-Long: ", repeat("b")},
  };
  std::atomic<int> running{static_cast<int>(streams.size())};
  std::vector<std::thread> threads;
  const std::string socket = daemon_->service_socket();
  for (auto& s : streams) {
    threads.emplace_back([&s, &running, socket] {
      RawConnection c(socket);
      if (c.send(s.prefix)) s.accepted = s.prefix.size() + c.stream(100 * 1000 * 1000, s.fill);
      s.answer = c.read_response(3s);
      --running;
    });
  }
  auto latencies = measure_wraps_while(socket, 200, [&] { return running.load() > 0; });
  for (auto& t : threads) t.join();
  ASSERT_TRUE(daemon_->running()) << daemon_->log();
  for (const auto& s : streams) {
    SCOPED_TRACE(s.prefix.substr(kChunkedHeader.size()));
    EXPECT_LT(s.accepted, kStreamCutOffBound) << "the daemon kept reading " << s.accepted << " bytes";
    expect_contract_error(s.answer, 400, "invalid_argument");
  }
  const std::size_t peak_after = proc_status_kib(pid, "VmHWM");
  EXPECT_LT(peak_after - peak_before, kRssGrowthBoundKiB)
      << "peak RSS grew from " << peak_before << " KiB to " << peak_after << " KiB";
  EXPECT_LT(proc_status_kib(pid, "VmRSS"), peak_before + kRssGrowthBoundKiB);
  if (latencies.ms.size() >= 20) expect_p99_within_bound(latencies, "four 100 MB chunked streams");
}

TEST_F(ChunkedAttacks, BodiesOverTheLimitArePayloadTooLargeHoweverFramed) {
  // The harness sets limits.max_body_bytes to 65536.
  const std::string big(70 * 1024, 'A');
  const std::string json_body = R"({"plaintext":")" + big + R"("})";
  {
    SCOPED_TRACE("Content-Length over the limit");
    RawConnection c(daemon_->service_socket());
    c.send(http_request("POST", "/v1/keys/demo/wrap", json_body));
    expect_contract_error(c.read_response(), 413, "payload_too_large");
    EXPECT_TRUE(c.closed_within(5s)) << "no close after the lingering read";
  }
  {
    SCOPED_TRACE("chunked total over the limit, each chunk small");
    std::string chunked = kChunkedHeader;
    for (std::size_t at = 0; at < json_body.size(); at += 2048) {
      const auto part = json_body.substr(at, 2048);
      char size[16];
      std::snprintf(size, sizeof size, "%zx", part.size());
      chunked += std::string(size) + "\r\n" + part + "\r\n";
    }
    chunked += "0\r\n\r\n";
    RawConnection c(daemon_->service_socket());
    c.send(chunked);
    expect_contract_error(c.read_response(), 413, "payload_too_large");
    EXPECT_TRUE(c.closed_within(5s));
  }
  {
    SCOPED_TRACE("a 100 MB chunked body");
    RawConnection c(daemon_->service_socket());
    ASSERT_TRUE(c.send(kChunkedHeader));
    const auto accepted = c.stream(100 * 1000 * 1000, repeat("1000\r\n" + std::string(0x1000, 'z') + "\r\n"));
    EXPECT_LT(accepted, kStreamCutOffBound);
    expect_contract_error(c.read_response(), 413, "payload_too_large");
  }
}
