// Bad input gets a clear error in the contract's shape, and the daemon keeps serving.
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <optional>
#include <set>
#include <thread>

#include "common/base64.h"
#include "tests/support/daemon_process.h"

using namespace custody;
using namespace custody::test;
namespace json = boost::json;

namespace {

// The other-uid tests act as uid 65534, which needs root (CI runs the suite as root). A quiet
// skip would let an unprivileged run pass without them ever running: they fail and say why.
#define REQUIRE_ROOT_TO_ACT_AS_ANOTHER_UID()                                                                  \
  do {                                                                                                        \
    if (::getuid() != 0)                                                                                      \
      GTEST_FAIL() << "this test connects as uid 65534 and so must run as root (as CI does); it did NOT run: " \
                      "run the suite as root (sudo, a container) to cover it";                                  \
  } while (false)

// A connected Unix socket, or -1 with errno set.
int connect_unix(const std::string& socket_path) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, socket_path.c_str(), sizeof addr.sun_path - 1);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    const int saved = errno;
    ::close(fd);
    errno = saved;
    return -1;
  }
  return fd;
}

struct RawReply {
  std::string bytes;    // everything the daemon sent
  bool closed = false;  // it closed the connection (rather than the read timing out)
};

// Sends raw bytes, half-closes, and reads until the daemon closes or 5 s pass.
RawReply raw_exchange(const std::string& socket_path, const std::string& bytes) {
  RawReply out;
  int fd = connect_unix(socket_path);
  if (fd < 0) {
    ADD_FAILURE() << "cannot connect to " << socket_path << ": " << std::strerror(errno);
    return out;
  }
  timeval tv{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  EXPECT_EQ(::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL), static_cast<ssize_t>(bytes.size()));
  ::shutdown(fd, SHUT_WR);
  char buf[4096];
  ssize_t n = 0;
  while ((n = ::recv(fd, buf, sizeof buf, 0)) > 0) out.bytes.append(buf, static_cast<std::size_t>(n));
  out.closed = n == 0;
  ::close(fd);
  return out;
}

class BadInputE2E : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    DaemonOptions o;
    // nogroup (65534) may connect, so that uid 65534 reaches the daemon and is refused by policy.
    o.service_group = "nogroup";
    daemon_ = new Daemon(o);
    ASSERT_EQ(daemon_->create_key("demo", "aes-256-gcm", allow_me_everything()), 201);
  }
  static void TearDownTestSuite() {
    delete daemon_;
    daemon_ = nullptr;
  }
  void expect_error(int status, const json::value& body, int want_status, const char* want_code) {
    EXPECT_EQ(status, want_status) << json::serialize(body);
    ASSERT_TRUE(body.is_object()) << json::serialize(body);
    EXPECT_EQ(body.at("error").at("code").as_string(), want_code);
    EXPECT_FALSE(body.at("error").at("message").as_string().empty());
    EXPECT_FALSE(body.at("error").at("request_id").as_string().empty());
  }
  void expect_still_serving() {
    auto [s, r] = daemon_->post("/v1/keys/demo/wrap", {{"plaintext", base64_encode(to_bytes("still here"))}});
    EXPECT_EQ(s, 200);
  }
  static Daemon* daemon_;
};
Daemon* BadInputE2E::daemon_ = nullptr;

}  // namespace

TEST_F(BadInputE2E, AnUnknownKeyIsRefusedOnTheServiceSocketAndNotFoundOnTheAdminSocket) {
  auto [s, b] = daemon_->post("/v1/keys/nope/wrap", {{"plaintext", "aGk="}});
  expect_error(s, b, 403, "permission_denied");
  auto shown = daemon_->service().call("GET", "/v1/keys/nope");
  expect_error(shown->status, json::parse(shown->body), 403, "permission_denied");
  auto attested = daemon_->service().call("POST", "/v1/attestation", R"({"keys":["nope"]})");
  expect_error(attested->status, json::parse(attested->body), 403, "permission_denied");
  // Operators see every key: they are told it does not exist.
  auto admin_shown = daemon_->admin().call("GET", "/v1/keys/nope");
  expect_error(admin_shown->status, json::parse(admin_shown->body), 404, "not_found");
  auto admin_attested = daemon_->admin().call("POST", "/v1/attestation", R"({"keys":["nope"]})");
  expect_error(admin_attested->status, json::parse(admin_attested->body), 404, "not_found");
  auto [s2, b2] = daemon_->post("/v1/keys/Bad%20Name/wrap", {{"plaintext", "aGk="}});
  expect_error(s2, b2, 400, "invalid_argument");
  expect_still_serving();
}

TEST_F(BadInputE2E, DuplicateFieldsAreRefusedNotCollapsed) {
  auto send = [&](const std::string& body) {
    auto r = daemon_->service().call("POST", "/v1/keys/demo/wrap", body);
    return std::pair{r->status, json::parse(r->body)};
  };
  auto [s, b] = send(R"({"plaintext":"aGk=","plaintext":"Ynll"})");
  expect_error(s, b, 400, "invalid_argument");
  EXPECT_EQ(b.at("error").at("message").as_string(), "duplicate field 'plaintext'");
  auto [s2, b2] = send(R"({"plaintext":"aGk=","context":{"tenant":"a","tenant":"b"}})");
  expect_error(s2, b2, 400, "invalid_argument");
  EXPECT_EQ(b2.at("error").at("message").as_string(), "duplicate field 'tenant' in 'context'");
  auto [s3, b3] = send(R"({"batch":[{"plaintext":"aGk=","context":{"k":"1","k":"1"}}]})");
  expect_error(s3, b3, 400, "invalid_argument");
  // The same name in different objects is no duplicate.
  auto [s4, b4] = send(R"({"plaintext":"aGk=","context":{"plaintext":"x"}})");
  EXPECT_EQ(s4, 200) << json::serialize(b4);
  expect_still_serving();
}

TEST_F(BadInputE2E, APeerCannotTellAMissingKeyFromOneItMayNotUse) {
  REQUIRE_ROOT_TO_ACT_AS_ANOTHER_UID();
  ASSERT_EQ(::chmod(daemon_->dir().c_str(), 0755), 0);
  // Every route that names a key, asked by uid 65534 (no policy names it) with one request id.
  const std::vector<std::pair<std::string, std::string>> calls = {
      {"/v1/keys/hidden/wrap", R"({"plaintext":"aGk="})"},
      {"/v1/keys/hidden/unwrap", R"({"ciphertext":"aGk="})"},
      {"/v1/keys/hidden/datakey", "{}"},
      {"/v1/keys/hidden/rewrap", R"({"ciphertext":"aGk="})"},
      {"/v1/keys/hidden/derive", R"({"info":"","length":32})"},
      {"/v1/keys/hidden/wrap", R"({"batch":[{"plaintext":"aGk="}]})"},
      {"GET /v1/keys/hidden", ""},
      {"/v1/attestation", R"({"keys":["hidden"]})"},
  };
  auto ask_as_nobody = [&] {
    int pipefd[2];
    EXPECT_EQ(::pipe(pipefd), 0);
    pid_t child = ::fork();
    if (child == 0) {
      ::close(pipefd[0]);
      json::array replies;
      if (::setgid(65534) == 0 && ::setuid(65534) == 0) {
        client::UnixHttpClient c(daemon_->service_socket());
        for (const auto& [target, body] : calls) {
          const bool get = target.rfind("GET ", 0) == 0;
          auto r = c.call(get ? "GET" : "POST", get ? target.substr(4) : target, body, {{"X-Request-Id", "same-id"}});
          replies.push_back(r ? json::value{r->status, r->body} : json::value{-1, r.error()});
        }
      }
      const std::string out = json::serialize(replies);
      (void)!::write(pipefd[1], out.data(), out.size());
      ::_exit(0);
    }
    ::close(pipefd[1]);
    std::string out;
    char buf[4096];
    for (ssize_t n; (n = ::read(pipefd[0], buf, sizeof buf)) > 0;) out.append(buf, static_cast<std::size_t>(n));
    ::close(pipefd[0]);
    ::waitpid(child, nullptr, 0);
    return json::parse(out).as_array();
  };
  const json::array missing = ask_as_nobody();
  ASSERT_EQ(daemon_->create_key("hidden", "aes-256-gcm", allow_me_everything()), 201);
  const json::array existing = ask_as_nobody();
  ASSERT_EQ(missing.size(), calls.size());
  ASSERT_EQ(existing.size(), calls.size());
  for (std::size_t i = 0; i < calls.size(); ++i) {
    SCOPED_TRACE(calls[i].first + " " + calls[i].second);
    EXPECT_EQ(json::serialize(missing[i]), json::serialize(existing[i])) << "the answers tell the two apart";
    const bool batch = calls[i].second.find("batch") != std::string::npos;
    EXPECT_EQ(missing[i].at(0).as_int64(), batch ? 200 : 403);
    const auto body = json::parse(missing[i].at(1).as_string());
    const auto& error = batch ? body.at("batch").at(0).at("error") : body.at("error");
    EXPECT_EQ(error.at("code").as_string(), "permission_denied");
    EXPECT_EQ(error.at("message").as_string().find("uid 65534 may not"), 0u) << json::serialize(error);
  }
  // The audit keeps the truth for the security team, under the same result code.
  const std::set<std::string> types = {"wrap", "unwrap", "datakey", "rewrap", "derive", "keys.show", "attestation"};
  int refused = 0, missing_noted = 0;
  for (const auto& rec : daemon_->audit_records()) {
    if (rec.at("request_id").as_string() != "same-id" || !types.count(std::string(rec.at("type").as_string()))) continue;
    EXPECT_EQ(rec.at("result").as_string(), "permission_denied") << json::serialize(rec);
    ++refused;
    if (const auto* exists = rec.if_contains("key_exists"); exists && !exists->as_bool()) ++missing_noted;
  }
  EXPECT_GE(refused, 2 * 7);    // each single request, before and after the key existed
  EXPECT_GE(missing_noted, 2);  // at least keys.show and attestation
  expect_still_serving();
}

TEST_F(BadInputE2E, MalformedJsonBase64AndFieldsAreInvalidArgument) {
  auto send = [&](const std::string& body) {
    auto r = daemon_->service().call("POST", "/v1/keys/demo/wrap", body);
    return std::pair{r->status, json::parse(r->body)};
  };
  for (const char* body : {"{", "[]", "\"x\"", "{\"plaintext\": 5}", "{\"plaintext\": \"a\"}", "{\"plaintext\": \"!!!!\"}",
                           "{\"plaintext\": \"\"}", "{\"plaintext\": \"aGk=\", \"colour\": 1}",
                           "{\"plaintext\": \"aGk=\", \"context\": {\"k\": 1}}", "{\"plaintext\": \"aGk=\", \"context\": []}"}) {
    auto [s, b] = send(body);
    SCOPED_TRACE(body);
    expect_error(s, b, 400, "invalid_argument");
  }
  std::string deep = "{\"plaintext\":\"aGk=\",\"context\":" + std::string(100, '[') + std::string(100, ']') + "}";
  auto [s, b] = send(deep);
  expect_error(s, b, 400, "invalid_argument");
  auto [s2, b2] = send("{\"plaintext\":\"" + base64_encode(Bytes(8193, 1)) + "\"}");
  expect_error(s2, b2, 400, "invalid_argument");
  auto [s3, b3] = daemon_->post("/v1/keys/demo/unwrap", {{"ciphertext", base64_encode(to_bytes("not a blob at all"))}});
  expect_error(s3, b3, 400, "invalid_ciphertext");
  expect_still_serving();
}

TEST_F(BadInputE2E, OversizeBodyIsPayloadTooLarge) {
  std::string body = "{\"plaintext\":\"" + std::string(70 * 1024, 'A') + "\"}";
  auto r = daemon_->service().call("POST", "/v1/keys/demo/wrap", body);
  ASSERT_TRUE(r) << r.error();
  expect_error(r->status, json::parse(r->body), 413, "payload_too_large");
  expect_still_serving();
}

TEST_F(BadInputE2E, WrongMethodAndUnknownPath) {
  auto r = daemon_->service().call("GET", "/v1/keys/demo/wrap");
  expect_error(r->status, json::parse(r->body), 405, "method_not_allowed");
  auto p = daemon_->service().call("GET", "/v1/nothing");
  expect_error(p->status, json::parse(p->body), 404, "not_found");
  // Admin routes do not exist on the service socket.
  auto a = daemon_->service().call("POST", "/v1/admin/requests", "{}");
  expect_error(a->status, json::parse(a->body), 404, "not_found");
  expect_still_serving();
}

TEST_F(BadInputE2E, MalformedHttpGetsA400AndATruncatedRequestAClose) {
  // A request the daemon can tell is malformed gets an answer: a 400 in the contract's shape.
  for (const std::string& bytes : {std::string("NOT HTTP AT ALL\r\n\r\n"),
                                  std::string("POST /v1/keys/demo/wrap HTTP/1.1\r\nHost: x\r\nContent-Length: zz\r\n\r\n{}")}) {
    SCOPED_TRACE(bytes);
    const RawReply reply = raw_exchange(daemon_->service_socket(), bytes);
    EXPECT_EQ(reply.bytes.rfind("HTTP/1.1 400", 0), 0u) << "answer: '" << reply.bytes << "'";
    EXPECT_NE(reply.bytes.find("\"error\""), std::string::npos) << reply.bytes;
    EXPECT_TRUE(reply.closed) << "the daemon kept a malformed connection open";
  }
  // A body cut short by the client's close has nothing complete to answer: the daemon closes at
  // once (not after a timeout) and says nothing.
  const RawReply truncated = raw_exchange(
      daemon_->service_socket(), "POST /v1/keys/demo/wrap HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"pl");
  EXPECT_TRUE(truncated.closed) << "the read timed out: the daemon neither answered nor closed";
  EXPECT_EQ(truncated.bytes, "");
  expect_still_serving();
}

TEST_F(BadInputE2E, AnotherUidIsDenied) {
  REQUIRE_ROOT_TO_ACT_AS_ANOTHER_UID();
  ASSERT_EQ(::chmod(daemon_->dir().c_str(), 0755), 0);
  int pipefd[2];
  ASSERT_EQ(::pipe(pipefd), 0);
  pid_t child = ::fork();
  if (child == 0) {
    ::close(pipefd[0]);
    int status = -1;
    if (::setgid(65534) == 0 && ::setuid(65534) == 0) {
      client::UnixHttpClient c(daemon_->service_socket());
      auto r = c.call("POST", "/v1/keys/demo/wrap", "{\"plaintext\":\"aGk=\"}");
      status = r ? r->status : -2;
      auto keys = c.call("GET", "/v1/keys/demo");
      if (status == 403 && (!keys || keys->status != 403)) status = -3;
    }
    (void)!::write(pipefd[1], &status, sizeof status);
    ::_exit(0);
  }
  ::close(pipefd[1]);
  int status = 0;
  ASSERT_EQ(::read(pipefd[0], &status, sizeof status), static_cast<ssize_t>(sizeof status));
  ::waitpid(child, nullptr, 0);
  EXPECT_EQ(status, 403);
  // The refusal is audited with the peer's uid.
  bool audited = false;
  for (const auto& rec : daemon_->audit_records())
    audited = audited || (rec.at("client").at("uid").as_int64() == 65534 && rec.at("result").as_string() == "permission_denied");
  EXPECT_TRUE(audited);
  expect_still_serving();
}

TEST_F(BadInputE2E, TheAdminSocketIsClosedToOthers) {
  REQUIRE_ROOT_TO_ACT_AS_ANOTHER_UID();
  ASSERT_EQ(::chmod(daemon_->dir().c_str(), 0755), 0);
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    if (::setgid(65534) != 0 || ::setuid(65534) != 0) ::_exit(2);
    // The socket's mode 0600 must refuse the connection itself (EACCES), not some later step.
    const int fd = connect_unix(daemon_->admin_socket());
    if (fd >= 0) ::_exit(1);
    ::_exit(errno == EACCES ? 0 : 3);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "1: uid 65534 connected to the admin socket; 2: could not become uid 65534; "
                                       "3: the connection failed, but not with EACCES";
  // The daemon's own uid still connects: the refusal above was the socket's mode.
  const int fd = connect_unix(daemon_->admin_socket());
  EXPECT_GE(fd, 0) << std::strerror(errno);
  if (fd >= 0) ::close(fd);
}

TEST(DaemonStartup, AWrongPinIsFatalWithAClearMessage) {
  TempDir dir;
  Daemon d;
  ASSERT_EQ(d.terminate(), 0);
  write_file(d.token().pin_file, "wrong-pin");
  EXPECT_THROW(d.start(), std::runtime_error);
  EXPECT_NE(d.log().find("PIN is wrong"), std::string::npos) << d.log();
}

TEST(Limits, ConnectionsBeyondTheLimitAreToldToRetryAndCounted) {
  DaemonOptions o;
  o.extra_limits = "  max_connections: 2\n";
  Daemon d(o);
  d.drop_client_connections();
  auto connect = [&] {
    int fd = connect_unix(d.service_socket());
    EXPECT_GE(fd, 0) << std::strerror(errno);
    timeval tv{5, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return fd;
  };
  // A connection certainly holds its slot once the daemon has answered on it.
  auto hold = [&] {
    int fd = connect();
    const std::string health = "GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n";
    EXPECT_EQ(::send(fd, health.data(), health.size(), MSG_NOSIGNAL), static_cast<ssize_t>(health.size()));
    char buf[12] = {};
    EXPECT_EQ(::recv(fd, buf, sizeof buf, MSG_WAITALL), static_cast<ssize_t>(sizeof buf));
    EXPECT_EQ(std::string(buf, sizeof buf), "HTTP/1.1 200");
    return fd;
  };
  int a = hold(), b = hold();
  // A third connection is told 429 with Retry-After (CONTRACT §1), then closed.
  int c = connect();
  std::string answer;
  char buf[4096];
  for (ssize_t n; (n = ::recv(c, buf, sizeof buf, 0)) > 0;) answer.append(buf, static_cast<std::size_t>(n));
  EXPECT_EQ(answer.rfind("HTTP/1.1 429", 0), 0u) << answer;
  EXPECT_NE(answer.find("Retry-After: "), std::string::npos) << answer;
  EXPECT_NE(answer.find("\"resource_exhausted\""), std::string::npos) << answer;
  ::close(c);
  ::close(a);
  ::close(b);
  // Until the daemon has seen the two close, a new connection may be refused too (and counted).
  int refused_since = 0;
  std::optional<client::HttpReply> metrics;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (std::chrono::steady_clock::now() < deadline) {
    auto r = client::UnixHttpClient(d.service_socket()).call("GET", "/metrics");
    if (r && r->status == 200) {
      metrics = *r;
      break;
    }
    if (r && r->status == 429) ++refused_since;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_TRUE(metrics) << "no slot came free within 10 s of closing every connection";
  EXPECT_NE(metrics->body.find("custody_connections_rejected_total " + std::to_string(1 + refused_since) + "\n"),
            std::string::npos)
      << metrics->body;
}

TEST_F(BadInputE2E, ALongPathCostsTheAuditLogAShortRecord) {
  const std::string target = "/v1/" + std::string(12 * 1024, 'a');
  auto r = daemon_->service().call("GET", target);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 404);
  const auto records = daemon_->audit_records();
  ASSERT_FALSE(records.empty());
  const auto& last = records.back();
  ASSERT_TRUE(last.contains("path"));
  EXPECT_EQ(last.at("path").as_string().size(), 256u);
  EXPECT_EQ(std::string(last.at("path").as_string()), target.substr(0, 256));
}
