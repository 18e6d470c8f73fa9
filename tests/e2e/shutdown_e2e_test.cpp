// SIGTERM under load: requests in flight complete, nothing answered is unaudited, exit status 0.
#include <gtest/gtest.h>
#include <signal.h>

#include <atomic>
#include <filesystem>
#include <thread>

#include "common/base64.h"
#include "tests/support/daemon_process.h"

using namespace custody;
using namespace custody::test;

TEST(ShutdownE2E, SigtermUnderLoadDrainsAndExitsZero) {
  Daemon d;
  ASSERT_EQ(d.create_key("demo", "aes-256-gcm", allow_me_everything()), 201);
  std::atomic<bool> stop{false};
  std::atomic<int> ok{0}, other{0};
  std::vector<std::thread> clients;
  for (int t = 0; t < 8; ++t) {
    clients.emplace_back([&] {
      client::UnixHttpClient c(d.service_socket(), std::chrono::seconds(10));
      const std::string body = "{\"batch\":[" + std::string(R"({"plaintext":"aGVsbG8="},)") + R"({"plaintext":"aGVsbG8="}]})";
      while (!stop) {
        auto r = c.call("POST", "/v1/keys/demo/wrap", body);
        if (!r) break;  // the daemon closed the connection: drained
        (r->status == 200 ? ok : other)++;
      }
    });
  }
  // Load first (bounded: clients that stop early must fail the test, not hang it).
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (ok < 200 && other == 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  if (ok < 200) {
    stop = true;
    for (auto& c : clients) c.join();
    FAIL() << "no load before SIGTERM: " << ok.load() << " batches answered 200, " << other.load() << " otherwise\n" << d.log();
  }
  const int exit_status = d.terminate();
  stop = true;
  for (auto& c : clients) c.join();
  EXPECT_EQ(exit_status, 0) << d.log();
  EXPECT_EQ(other.load(), 0) << "a request got a non-200 answer during the drain";
  // Every answered batch has its two records; nothing answered was unaudited.
  int wraps = 0;
  auto records = d.audit_records();
  for (const auto& r : records) wraps += r.at("type").as_string() == "wrap" && r.at("result").as_string() == "ok";
  EXPECT_EQ(wraps, 2 * ok.load());
  ASSERT_GE(records.size(), 2u);
  EXPECT_EQ(records[records.size() - 2].at("type").as_string(), "daemon.stop");
  EXPECT_EQ(records.back().at("type").as_string(), "checkpoint");
  EXPECT_FALSE(std::filesystem::exists(d.service_socket()));
}
