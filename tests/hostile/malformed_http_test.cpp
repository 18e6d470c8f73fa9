// Every malformed HTTP request gets the contract's 400 (invalid_argument, X-Request-Id) and the
// connection is closed; well-formed framing still works; garbage, pipelined or random, never ends
// the daemon nor slows a well-behaved client past the bound.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <random>
#include <thread>

#include "tests/hostile/hostile_support.h"

using namespace custody;
using namespace custody::hostile;
using namespace custody::test;

namespace {

const std::string kWrapBody = R"({"plaintext":"aGk="})";

struct Case {
  const char* name;
  std::string bytes;
};

std::string many_fields(int count) {
  // Host is one of them.
  std::string r = "GET /v1/health HTTP/1.1\r\nHost: custody\r\n";
  for (int i = 1; i < count; ++i) r += "X-Field-" + std::to_string(i) + ": v\r\n";
  return r + "\r\n";
}

std::vector<Case> malformed_requests() {
  const std::string post = "POST /v1/keys/demo/wrap HTTP/1.1\r\nHost: custody\r\n";
  return {
      {"garbage request line", "NOT HTTP AT ALL\r\n\r\n"},
      {"HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"},
      {"bare LF line endings", "GET /v1/health HTTP/1.1\nHost: custody\n\n"},
      {"Content-Length with Transfer-Encoding",
       post + "Content-Length: 20\r\nTransfer-Encoding: chunked\r\n\r\n14\r\n" + kWrapBody + "\r\n0\r\n\r\n"},
      {"two Content-Length headers", post + "Content-Length: 20\r\nContent-Length: 20\r\n\r\n" + kWrapBody},
      {"non-numeric Content-Length", post + "Content-Length: zz\r\n\r\n" + kWrapBody},
      {"Transfer-Encoding gzip, chunked", post + "Transfer-Encoding: gzip, chunked\r\n\r\n14\r\n" + kWrapBody + "\r\n0\r\n\r\n"},
      {"Transfer-Encoding identity", post + "Transfer-Encoding: identity\r\nContent-Length: 20\r\n\r\n" + kWrapBody},
      {"Transfer-Encoding chunked, chunked",
       post + "Transfer-Encoding: chunked, chunked\r\n\r\n14\r\n" + kWrapBody + "\r\n0\r\n\r\n"},
      {"two Transfer-Encoding headers",
       post + "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n14\r\n" + kWrapBody + "\r\n0\r\n\r\n"},
      {"chunk extension", post + "Transfer-Encoding: chunked\r\n\r\n14;ext=1\r\n" + kWrapBody + "\r\n0\r\n\r\n"},
      {"trailer field", post + "Transfer-Encoding: chunked\r\n\r\n14\r\n" + kWrapBody + "\r\n0\r\nX-Trailer: 1\r\n\r\n"},
      {"obs-fold", "GET /v1/health HTTP/1.1\r\nHost: custody\r\nX-Folded: a\r\n  b\r\n\r\n"},
      {"101 header fields", many_fields(101)},
      {"header over max_header_bytes",
       "GET /v1/health HTTP/1.1\r\nHost: custody\r\nX-Big: " + std::string(17 * 1024, 'h') + "\r\n\r\n"},
      {"request line over max_header_bytes", "GET /v1/health?" + std::string(17 * 1024, 'q') + " HTTP/1.1\r\nHost: custody\r\n\r\n"},
  };
}

class MalformedHttp : public SharedDaemonTest<MalformedHttp> {
 public:
  static DaemonOptions daemon_options() { return {}; }
};

}  // namespace

TEST_F(MalformedHttp, EachMalformedRequestGets400ThenTheConnectionCloses) {
  for (const auto& socket : {daemon_->service_socket(), daemon_->admin_socket()}) {
    for (const auto& c : malformed_requests()) {
      SCOPED_TRACE(std::string(c.name) + " on " + socket);
      auto e = raw_exchange(socket, c.bytes);
      expect_contract_error(e.response, 400, "invalid_argument");
      EXPECT_TRUE(e.closed_after) << "the connection stayed open after the 400";
      ASSERT_TRUE(daemon_->running()) << daemon_->log();
    }
  }
}

TEST_F(MalformedHttp, WellFormedFramingAtTheLimitsIsServed) {
  const std::string post = "POST /v1/keys/demo/wrap HTTP/1.1\r\nHost: custody\r\n";
  std::vector<Case> fine = {
      {"one chunked coding", post + "Transfer-Encoding: chunked\r\n\r\n14\r\n" + kWrapBody + "\r\n0\r\n\r\n"},
      {"chunked in two chunks",
       post + "Transfer-Encoding: chunked\r\n\r\n4\r\n" + kWrapBody.substr(0, 4) + "\r\n10\r\n" + kWrapBody.substr(4) +
           "\r\n0\r\n\r\n"},
      {"100 header fields", many_fields(100)},
      {"header just under max_header_bytes",
       "GET /v1/health HTTP/1.1\r\nHost: custody\r\nX-Big: " + std::string(15 * 1024, 'h') + "\r\n\r\n"},
  };
  for (const auto& c : fine) {
    SCOPED_TRACE(c.name);
    RawConnection conn(daemon_->service_socket());
    ASSERT_TRUE(conn.send(c.bytes));
    auto r = conn.read_response();
    EXPECT_EQ(r.status, 200) << r.body;
    EXPECT_FALSE(r.header("x-request-id").empty());
    // Kept alive: a second request on the same connection is served.
    ASSERT_TRUE(conn.send(http_request("POST", "/v1/keys/demo/wrap", kWrapBody)));
    EXPECT_EQ(conn.read_response().status, 200);
  }
}

TEST_F(MalformedHttp, PipelinedRequestsAreAnsweredInOrderAndGarbageAfterThemEndsTheConnection) {
  std::string burst;
  for (int i = 0; i < 20; ++i)
    burst += http_request("POST", "/v1/keys/demo/wrap", kWrapBody, {"X-Request-Id: pipelined-" + std::to_string(i)});
  burst += "\x16\x03\x01 garbage after good requests\r\n\r\n";
  RawConnection conn(daemon_->service_socket());
  ASSERT_TRUE(conn.send(burst));
  for (int i = 0; i < 20; ++i) {
    auto r = conn.read_response();
    ASSERT_EQ(r.status, 200) << "request " << i << ": " << r.body;
    EXPECT_EQ(r.header("x-request-id"), "pipelined-" + std::to_string(i));
  }
  expect_contract_error(conn.read_response(), 400, "invalid_argument");
  EXPECT_TRUE(conn.closed_within(3s));
}

TEST_F(MalformedHttp, RandomGarbageOnManyConnectionsNeverEndsTheDaemonNorSlowsOthers) {
  std::atomic<bool> attacking{true};
  std::atomic<int> answered{0}, server_errors{0};
  std::string first_server_error;
  const std::string socket = daemon_->service_socket();
  std::thread attacker([&] {
    std::mt19937 rng(20260901);
    const std::string valid = http_request("POST", "/v1/keys/demo/wrap", R"({"plaintext":"aGk=","context":{"a":"b"}})") +
                              http_request("GET", "/v1/health");
    using namespace std::string_literals;
    const std::string alphabet = "\r\n :;,0123456789abcdefABCDEF\t\x00\x7f\xff{}[]\"-chunkedTransfer-EncodingContent-Length"s;
    for (int round = 0; round < 400; ++round) {
      std::string bytes = valid;
      const int mutations = 1 + static_cast<int>(rng() % 8);
      for (int m = 0; m < mutations && !bytes.empty(); ++m) {
        const std::size_t at = rng() % bytes.size();
        switch (rng() % 4) {
          case 0: bytes[at] = alphabet[rng() % alphabet.size()]; break;
          case 1: bytes.insert(at, 1 + rng() % 16, alphabet[rng() % alphabet.size()]); break;
          case 2: bytes.erase(at, 1 + rng() % 8); break;
          default: bytes.resize(at); break;
        }
      }
      RawConnection conn(socket);
      conn.send(bytes, 1s);
      conn.shutdown_send();  // a truncated request ends here instead of waiting for its timeout
      for (;;) {
        auto r = conn.read_response(3s);
        if (r.status == 0) break;
        ++answered;
        if (r.status >= 500 && server_errors++ == 0) first_server_error = std::to_string(r.status) + " " + r.body;
      }
    }
    attacking = false;
  });
  auto latencies = measure_wraps_while(daemon_->service_socket(), 200, [&] { return attacking.load(); });
  attacker.join();
  EXPECT_GT(answered.load(), 0);
  EXPECT_EQ(server_errors.load(), 0) << "garbage earned a 5xx: " << first_server_error;
  expect_p99_within_bound(latencies, "random garbage on 400 connections");
}

// Its own daemon: a chain broken here must not fail the other tests' checks.
TEST(NonAsciiBytes, InTheTargetOrRequestIdTheAnswersAndTheAuditLogStayJson) {
  Daemon d;
  ASSERT_EQ(d.create_key("demo", "aes-256-gcm", allow_me_everything()), 201);
  // A request target is ASCII (RFC 9112); bytes that are not UTF-8 must neither reach a JSON
  // answer nor an audit record raw, or the chain stops verifying.
  const std::vector<std::string> targets = {"/v1/k\xff\xff" "eys/demo/wrap", "/v1/keys/d\xc3(mo/wrap",
                                            "/v1/keys/\xe2\x82/wrap", "/v1/keys/demo\x7f/wrap", "/v1/\xc0\xaf"};
  for (const auto& target : targets) {
    SCOPED_TRACE(target);
    auto r = send_request(d.service_socket(), http_request("POST", target, R"({"plaintext":"aGk="})"));
    ASSERT_TRUE(r.status == 400 || r.status == 404) << r.status << " " << r.body;
    expect_contract_error(r, r.status, r.status == 400 ? "invalid_argument" : "not_found");
  }
  auto r = send_request(d.service_socket(),
                        http_request("POST", "/v1/keys/demo/wrap", R"({"plaintext":"aGk="})", {"X-Request-Id: id-\xff\xfe"}));
  EXPECT_EQ(r.status, 200) << r.body;
  const auto id = r.header("x-request-id");
  EXPECT_FALSE(id.empty());
  EXPECT_TRUE(std::all_of(id.begin(), id.end(), [](char c) { return c > 0x20 && c < 0x7f; })) << "echoed a request id that is not printable";
  expect_alive_and_serving(d);
  expect_audit_chain_verifies(d);
}
