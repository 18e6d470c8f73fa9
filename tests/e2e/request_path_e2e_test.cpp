// Who makes the PKCS#11 calls (issue #10): token.workers auto settles on the I/O thread for a token
// in the process and on a pool for a slow one, and both paths answer concurrent clients correctly,
// every request audited once, in one chain.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "common/base64.h"
#include "tests/support/daemon_process.h"

using namespace custody;
using namespace custody::test;
namespace json = boost::json;

namespace {

// Eight clients, each on its own connection, wrapping and unwrapping its own plaintexts.
void expect_concurrent_round_trips(Daemon& d, int rounds) {
  std::atomic<int> failures{0};
  std::vector<std::thread> clients;
  for (int c = 0; c < 8; ++c) {
    clients.emplace_back([&, c] {
      client::UnixHttpClient conn(d.service_socket());
      for (int i = 0; i < rounds; ++i) {
        const std::string plaintext = base64_encode(to_bytes("client " + std::to_string(c) + " round " + std::to_string(i)));
        auto wrapped = conn.call("POST", "/v1/keys/k/wrap", json::serialize(json::object{{"plaintext", plaintext}}));
        if (!wrapped || wrapped->status != 200) {
          ++failures;
          continue;
        }
        const auto blob = json::parse(wrapped->body).at("ciphertext");
        auto opened = conn.call("POST", "/v1/keys/k/unwrap", json::serialize(json::object{{"ciphertext", blob}}));
        if (!opened || opened->status != 200 || json::parse(opened->body).at("plaintext").as_string() != plaintext)
          ++failures;
      }
    });
  }
  for (auto& t : clients) t.join();
  EXPECT_EQ(failures.load(), 0);
  std::size_t wraps = 0, unwraps = 0;
  for (const auto& r : d.audit_records()) {
    wraps += r.at("type") == "wrap";
    unwraps += r.at("type") == "unwrap";
  }
  EXPECT_EQ(wraps, 8u * static_cast<unsigned>(rounds));
  EXPECT_EQ(unwraps, 8u * static_cast<unsigned>(rounds));
  EXPECT_EQ(run(std::string(CUSTODYCTL_PATH) + " audit verify " + d.audit_path() + " >/dev/null"), 0);
}

}  // namespace

TEST(RequestPathE2E, AutoRunsCallsOnTheIoThreadForATokenInTheProcess) {
  Daemon d;  // token.workers: auto, SoftHSMv2
  EXPECT_NE(d.log().find("PKCS#11 calls run on the I/O thread"), std::string::npos) << d.log();
  ASSERT_EQ(d.create_key("k", "aes-256-gcm", allow_me_everything()), 201);
  expect_concurrent_round_trips(d, 25);
}

TEST(RequestPathE2E, AutoGivesATokenWithARoundTripAPoolAsLargeAsItsSessions) {
  DaemonOptions o;
  o.module = CUSTODY_FAULT_SHIM;
  o.env["CUSTODY_SHIM_LATENCY_US"] = "300";  // a token across a network
  o.token_sessions = 3;
  Daemon d(o);
  EXPECT_NE(d.log().find("a pool of 3 workers"), std::string::npos) << d.log();
  ASSERT_EQ(d.create_key("k", "aes-256-gcm", allow_me_everything()), 201);
  expect_concurrent_round_trips(d, 10);
}

TEST(RequestPathE2E, AnExplicitPoolServesConcurrentClients) {
  DaemonOptions o;
  o.token_sessions = 3;
  o.token_workers = "3";
  Daemon d(o);
  EXPECT_EQ(d.log().find("token.workers auto"), std::string::npos) << "an explicit count is not timed";
  ASSERT_EQ(d.create_key("k", "aes-256-gcm", allow_me_everything()), 201);
  expect_concurrent_round_trips(d, 25);
}
