// Hostile JSON (duplicate member names, nesting past limits.max_json_depth, oversize batches) and
// hostile peers on the service socket: "unknown key" and "not yours" give one answer (403), and a
// uid with no right cannot amplify the audit log with batches of refused items (finding 4).
#include <gtest/gtest.h>

#include <sstream>

#include "tests/hostile/hostile_support.h"

using namespace custody;
using namespace custody::hostile;
using namespace custody::test;

namespace {

constexpr uid_t kStranger = 65534;  // named by no policy

class HostileJson : public SharedDaemonTest<HostileJson> {
 public:
  static DaemonOptions daemon_options() {
    DaemonOptions o;
    o.service_group = "nogroup";
    return o;
  }

 protected:
  static RawResponse post(const std::string& target, const std::string& body) {
    return send_request(daemon_->service_socket(), http_request("POST", target, body));
  }
  static std::string batch_of(int n, const std::string& item) {
    std::string items;
    for (int i = 0; i < n; ++i) items += std::string(i ? "," : "") + item;
    return R"({"batch":[)" + items + "]}";
  }
};

}  // namespace

TEST_F(HostileJson, DuplicateMemberNamesAnywhereAreInvalidArgument) {
  const char* bodies[] = {
      R"({"plaintext":"aGk=","plaintext":"aGk="})",
      R"({"plaintext":"aGk=","context":{"tenant":"a","tenant":"b"}})",
      R"({"plaintext":"aGk=","context":{"tenant":"a"},"context":{"tenant":"b"}})",
      R"({"batch":[{"plaintext":"aGk=","plaintext":"aGk="}]})",
      R"({"batch":[{"plaintext":"aGk=","context":{"k":"1","k":"1"}}]})",
      R"({"batch":[{"plaintext":"aGk="}],"batch":[{"plaintext":"aGk="}]})",
  };
  for (const char* body : bodies) {
    SCOPED_TRACE(body);
    expect_contract_error(post("/v1/keys/demo/wrap", body), 400, "invalid_argument");
  }
  // The same members without the duplicate are fine.
  EXPECT_EQ(post("/v1/keys/demo/wrap", R"({"plaintext":"aGk=","context":{"tenant":"a","team":"b"}})").status, 200);
}

TEST_F(HostileJson, NestingPastTheDepthLimitIsInvalidArgument) {
  // limits.max_json_depth is 16 by default; the deepest is as deep as the body limit allows.
  for (int depth : {17, 64, 30000}) {
    SCOPED_TRACE(depth);
    const std::string nested = std::string(static_cast<std::size_t>(depth), '[') + std::string(static_cast<std::size_t>(depth), ']');
    expect_contract_error(post("/v1/keys/demo/wrap", R"({"plaintext":"aGk=","context":)" + nested + "}"), 400,
                          "invalid_argument");
    std::string objects;
    for (int i = 0; i < depth && objects.size() < 40000; ++i) objects += R"({"a":)";
    const std::size_t opened = objects.size() / 5;
    objects += "1" + std::string(opened, '}');
    expect_contract_error(post("/v1/keys/demo/wrap", objects), 400, "invalid_argument");
  }
}

TEST_F(HostileJson, BatchesOver256ItemsAreInvalidArgument) {
  const std::string item = R"({"plaintext":"aGk="})";
  expect_contract_error(post("/v1/keys/demo/wrap", batch_of(257, item)), 400, "invalid_argument");
  expect_contract_error(post("/v1/keys/demo/wrap", batch_of(10000, "{}")), 400, "invalid_argument");
  auto full = post("/v1/keys/demo/wrap", batch_of(256, item));
  ASSERT_EQ(full.status, 200) << full.body;
  EXPECT_EQ(full.json().at("batch").as_array().size(), 256u);
}

TEST_F(HostileJson, UnknownAndForbiddenKeysGetTheSameAnswer) {
  if (::getuid() != 0) GTEST_SKIP() << "needs root to act as another uid";
  open_daemon_dir_to_others(*daemon_);
  const std::string socket = daemon_->service_socket();
  // For each request: status, code, and the message with the key's name taken out.
  AsUid stranger(kStranger, [socket](ChildControl&) {
    std::ostringstream out;
    auto answer = [&](const std::string& method, const std::string& key, const std::string& tail, const std::string& body) {
      auto r = send_request(socket, http_request(method, "/v1/keys/" + key + tail, body));
      std::string message;
      if (auto v = r.json(); v.is_object() && v.as_object().contains("error"))
        message = std::string(v.at("error").at("message").as_string());
      for (std::size_t at; (at = message.find(key)) != std::string::npos;) message.replace(at, key.size(), "KEY");
      out << r.status << ' ' << error_code(r) << ' ' << message << '\n';
    };
    for (const std::string key : {"demo", "ghost"}) {
      answer("POST", key, "/wrap", R"({"plaintext":"aGk="})");
      answer("POST", key, "/datakey", R"({"length":32})");
      answer("POST", key, "/rewrap", R"({"ciphertext":"aGk="})");
      answer("GET", key, "", "");
    }
    return out.str();
  });
  std::istringstream lines(stranger.result());
  std::vector<std::string> answers;
  for (std::string line; std::getline(lines, line);) answers.push_back(line);
  ASSERT_EQ(answers.size(), 8u) << lines.str();
  for (std::size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(answers[i].rfind("403 permission_denied", 0), 0u) << answers[i];
    EXPECT_EQ(answers[i], answers[i + 4]) << "an existing key and a missing one are told apart";
  }
  // A peer with rights on other keys gets the same answer for a key that does not exist.
  expect_contract_error(post("/v1/keys/ghost/wrap", R"({"plaintext":"aGk="})"), 403, "permission_denied");
}

TEST_F(HostileJson, RefusedBatchesAreAuditedOncePerRequestNotPerItem) {
  if (::getuid() != 0) GTEST_SKIP() << "needs root to act as another uid";
  open_daemon_dir_to_others(*daemon_);
  const std::string socket = daemon_->service_socket();
  const auto count_stranger_records = [&] {
    std::size_t n = 0;
    for (const auto& rec : audit_records_so_far(*daemon_))
      if (rec.at("client").at("uid").as_int64() == kStranger) ++n;
    return n;
  };
  const std::size_t records_before = count_stranger_records();
  const auto bytes_before = read_file(daemon_->audit_path()).size();
  // Finding 4: batches of 256 items on a key the uid has no right to, as fast as it can.
  const std::string request = http_request("POST", "/v1/keys/demo/wrap", batch_of(256, R"({"plaintext":"aGk="})"));
  AsUid stranger(kStranger, [socket, request](ChildControl& control) {
    RawConnection c(socket);
    int sent = 0, bad = 0;
    bool said_ready = false;
    while (!control.released() && sent < 2000) {
      if (!c.send(request)) break;
      auto r = c.read_response();
      if (r.status == 0) break;
      ++sent;
      // The contract's per-item answer (200, each item refused) or one 403 for the request.
      bool refused = r.status == 403 && error_code(r) == "permission_denied";
      if (const auto v = r.json(); r.status == 200 && v.is_object() && v.as_object().contains("batch")) {
        refused = true;
        for (const auto& item : v.at("batch").as_array()) {
          const auto* error = item.is_object() ? item.as_object().if_contains("error") : nullptr;
          const auto* code = error && error->is_object() ? error->as_object().if_contains("code") : nullptr;
          refused = refused && code && code->is_string() && code->as_string() == "permission_denied";
        }
      }
      if (!refused) ++bad;
      if (!said_ready) {
        control.ready();
        said_ready = true;
      }
    }
    return std::to_string(sent) + " " + std::to_string(bad);
  });
  ASSERT_TRUE(stranger.wait_ready()) << stranger.result();
  auto latencies = measure_wraps(socket, 200);
  int sent = 0, bad = 0;
  std::istringstream(stranger.result()) >> sent >> bad;
  ASSERT_GT(sent, 0);
  EXPECT_EQ(bad, 0) << "a refused batch got another answer";
  expect_p99_within_bound(latencies, "batches of 256 refused items from uid 65534");
  const std::size_t records = count_stranger_records() - records_before;
  EXPECT_EQ(records, static_cast<std::size_t>(sent)) << sent << " refused batches wrote " << records << " audit records";
  const auto growth = read_file(daemon_->audit_path()).size() - bytes_before;
  // One record per request and the well-behaved client's 200 wraps; not 256 records per request.
  EXPECT_LT(growth, static_cast<std::size_t>(sent + 200) * 2048) << growth << " audit bytes for " << sent << " requests";
}
