// The AWS KMS External Key Store proxy listener end to end: a real custodyd on a fresh SoftHSMv2
// token with the xks section, driven by the spec-derived conformance suite (tests/xks, its own
// SigV4 signer and curl --aws-sigv4) over mutual TLS and over plain HTTP, and by single calls for
// what needs the admin socket in between: disable-key revokes at once, enable-key restores,
// SIGHUP rotates credentials, and every call is in the audit log.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <boost/json.hpp>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <regex>
#include <thread>

#include "common/base64.h"
#include "tests/support/daemon_process.h"

namespace custody::test {
namespace {

namespace json = boost::json;

constexpr const char* kAccessKey1 = "AKIAXKSTESTONE2345672";
constexpr const char* kAccessKey2 = "AKIAXKSTESTTWO2345672";
constexpr const char* kSecret1 = "one-secret-access-key-of-forty-three-chars-x";
constexpr const char* kSecret2 = "two-secret-access-key-of-forty-three-chars-y";
constexpr const char* kSecret2Rotated = "two-rotated-secret-access-key-of-43-chars-zz";
constexpr int kXksUid = 60999;

struct Shell {
  int status;
  std::string out;
};

Shell run(const std::string& command) {
  Shell r{-1, {}};
  FILE* p = ::popen((command + " 2>&1").c_str(), "r");
  if (!p) return r;
  std::array<char, 4096> buf;
  std::size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), p)) > 0) r.out.append(buf.data(), n);
  const int status = ::pclose(p);
  r.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

void write_secret(const std::string& path, const std::string& secret) {
  write_file(path, secret + "\n");
  ASSERT_EQ(::chmod(path.c_str(), 0600), 0);
}

// A CA, a server certificate for 127.0.0.1, a client certificate it signed, and an expired one.
void make_pki(const std::string& dir) {
  const std::string ec = "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes";
  auto ok = [](const std::string& cmd) { ASSERT_EQ(run(cmd).status, 0) << cmd; };
  ok("openssl req -x509 " + ec + " -keyout " + dir + "/ca.key -out " + dir + "/ca.pem -days 2 -subj /CN=test-ca");
  for (auto [name, subject, days, ext] :
       {std::tuple{"server", "/CN=localhost", "2", "subjectAltName=IP:127.0.0.1"},
        std::tuple{"client", "/CN=kms-test-client", "2", "extendedKeyUsage=clientAuth"},
        std::tuple{"expired", "/CN=kms-test-client", "-1", "extendedKeyUsage=clientAuth"}}) {
    const std::string n = dir + "/" + name;
    write_file(n + ".ext", ext);
    ok("openssl req " + ec + " -keyout " + n + ".key -out " + n + ".csr -subj " + subject);
    ok("openssl x509 -req -in " + n + ".csr -CA " + dir + "/ca.pem -CAkey " + dir + "/ca.key -CAcreateserial -days " +
       days + " -extfile " + n + ".ext -out " + n + ".pem");
  }
}

class XksListener : public ::testing::Test {
 protected:
  void start(bool tls, std::string extra_limits = "", std::string extra_xks = "") {
    tls_ = tls;
    make_pki(pki_.path());
    write_secret(pki_.path() + "/secret-1", kSecret1);
    write_secret(pki_.path() + "/secret-2", kSecret2);
    const std::string& p = pki_.path();
    DaemonOptions options = options_;
    options.extra_limits = std::move(extra_limits);
    options.extra_yaml = "xks:\n  address: 127.0.0.1\n  port: 0\n" +
                         (tls ? "  tls:\n    certificate: " + p + "/server.pem\n    private_key: " + p +
                                    "/server.key\n    client_ca: " + p + "/ca.pem\n" + tls_extra_
                              : std::string("  plain_http: true\n")) +
                         "  region: us-east-1\n  uri_prefix: /test/prefix\n  credentials:\n"
                         "    - {access_key_id: " + kAccessKey1 + ", secret_file: " + p + "/secret-1}\n" +
                         (second_credential_.empty() ? "    - {access_key_id: " + std::string(kAccessKey2) + ", secret_file: " + p + "/secret-2}\n"
                                                     : second_credential_) +
                         "  acts_as_uid: " + std::to_string(kXksUid) + "\n"
                         "  keys: {kms-key: xks-key, kms-enc: xks-enc, kms-dec: xks-dec, kms-none: xks-none, kms-unruled: xks-unruled}\n"
                         "  health_key: xks-health\n" + extra_xks;
    daemon_ = std::make_unique<Daemon>(options);
    const std::string uid = std::to_string(kXksUid);
    for (auto [name, ops] : {std::pair{"xks-key", R"("wrap","unwrap")"}, std::pair{"xks-enc", R"("wrap")"},
                             std::pair{"xks-dec", R"("unwrap")"}, std::pair{"xks-none", R"("datakey")"},
                             std::pair{"xks-health", R"("datakey")"}})
      ASSERT_EQ(daemon_->create_key(name, "aes-256-gcm", "[{\"uid\":" + uid + ",\"operations\":[" + ops + "]}]"), 201);
    std::smatch m;
    const std::string log = daemon_->log();
    ASSERT_TRUE(std::regex_search(log, m, std::regex("xks listener on 127\\.0\\.0\\.1:([0-9]+)"))) << log;
    endpoint_ = std::string(tls ? "https" : "http") + "://127.0.0.1:" + m[1].str();
  }

  std::string env() const {
    const std::string& p = pki_.path();
    std::string e = "CUSTODY_XKS_ENDPOINT=" + endpoint_ + " CUSTODY_XKS_URI_PREFIX=/test/prefix" +
                    " CUSTODY_XKS_ACCESS_KEY_ID=" + kAccessKey1 + " CUSTODY_XKS_SECRET_ACCESS_KEY=" + kSecret1 +
                    " CUSTODY_XKS_SECOND_ACCESS_KEY_ID=" + kAccessKey2 + " CUSTODY_XKS_SECOND_SECRET_ACCESS_KEY=" + kSecret2 +
                    " CUSTODY_XKS_KEY_ID=kms-key CUSTODY_XKS_ENCRYPT_ONLY_KEY_ID=kms-enc"
                    " CUSTODY_XKS_DECRYPT_ONLY_KEY_ID=kms-dec CUSTODY_XKS_IMPOTENT_KEY_ID=kms-none";
    if (tls_)
      e += " CUSTODY_XKS_CA=" + p + "/ca.pem CUSTODY_XKS_CLIENT_CERT=" + p + "/client.pem CUSTODY_XKS_CLIENT_KEY=" + p +
           "/client.key CUSTODY_XKS_EXPIRED_CLIENT_CERT=" + p + "/expired.pem CUSTODY_XKS_EXPIRED_CLIENT_KEY=" + p +
           "/expired.key";
    return e;
  }

  // One call signed by curl --aws-sigv4 (plain HTTP listener); the status and the parsed body.
  std::pair<int, json::object> call(const std::string& route, const json::object& body,
                                    const std::string& access_key = kAccessKey1, const std::string& secret = kSecret1) {
    const std::string body_file = pki_.path() + "/body.json";
    write_file(body_file, json::serialize(body));
    auto r = run("curl -sS -w '\\n%{http_code}' --aws-sigv4 aws:amz:us-east-1:kms-xks-proxy --user " + access_key + ":" +
                 secret + " -H 'content-type: application/json' --data-binary @" + body_file + " " + endpoint_ +
                 "/test/prefix/kms/xks/v1/" + route);
    const auto nl = r.out.rfind('\n');
    if (r.status != 0 || nl == std::string::npos) return {-1, {}};
    json::object parsed;
    if (nl > 0) parsed = json::parse(r.out.substr(0, nl)).as_object();
    return {std::stoi(r.out.substr(nl + 1)), parsed};
  }

  // A health call over mutual TLS through the conformance suite's signer.
  int call_tls_health() {
    return run("env " + env() + " python3 " CUSTODY_SOURCE_DIR "/tests/xks/xks_conformance.py -k health").status == 0 ? 200 : -1;
  }

  static json::object metadata(const std::string& op, const std::string& request_id) {
    return {{"awsPrincipalArn", "arn:aws:iam::111122223333:role/app"},
            {"kmsKeyArn", "arn:aws:kms:us-east-1:111122223333:key/k"},
            {"kmsOperation", op},
            {"kmsRequestId", request_id}};
  }

  // A raw TCP connection to the listener (plain HTTP), for the hostile-input cases.
  int connect_raw() const {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<std::uint16_t>(std::stoi(endpoint_.substr(endpoint_.rfind(':') + 1))));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) return -1;
    timeval limit{10, 0};  // a bound on every read below, not an assertion on time
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
    return fd;
  }
  static std::string read_all(int fd) {
    std::string out;
    char buf[4096];
    ssize_t n;
    while ((n = ::recv(fd, buf, sizeof buf, 0)) > 0) out.append(buf, static_cast<std::size_t>(n));
    return out;
  }

  DaemonOptions options_;  // the daemon's options before start() adds the xks section
  std::string tls_extra_;  // further lines under xks.tls, each indented by four spaces
  std::string second_credential_;  // the second xks.credentials entry, when not the secret-2 file
  TempDir pki_;
  std::unique_ptr<Daemon> daemon_;
  std::string endpoint_;
  bool tls_ = false;
};

TEST_F(XksListener, ConformanceSuitePassesOverMutualTls) {
  start(true);
  auto r = run("env " + env() + " python3 " CUSTODY_SOURCE_DIR "/tests/xks/xks_conformance.py");
  EXPECT_EQ(r.status, 0) << r.out;
  EXPECT_EQ(r.out.find("FAIL"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("PASS mtls_client_certificates ("), std::string::npos) << r.out;  // ran, not skipped
}

TEST_F(XksListener, ConformanceSuitePassesOverPlainHttp) {
  start(false);
  auto r = run("env " + env() + " python3 " CUSTODY_SOURCE_DIR "/tests/xks/xks_conformance.py");
  EXPECT_EQ(r.status, 0) << r.out;
  EXPECT_EQ(r.out.find("FAIL"), std::string::npos) << r.out;
}

TEST_F(XksListener, DisableKeyRevokesDecryptAtOnceAndEnableKeyRestoresIt) {
  start(false);
  json::object enc{{"requestMetadata", metadata("Encrypt", "req-enc-1")},
                   {"plaintext", "SGVsbG8gV29ybGQh"},
                   {"encryptionAlgorithm", "AES_GCM"},
                   {"additionalAuthenticatedData", "cHJvamVjdD1uaWxl"}};
  auto [status, sealed] = call("keys/kms-key/encrypt", enc);
  ASSERT_EQ(status, 200) << json::serialize(sealed);
  json::object dec{{"requestMetadata", metadata("Decrypt", "req-dec-1")},
                   {"encryptionAlgorithm", "AES_GCM"},
                   {"additionalAuthenticatedData", "cHJvamVjdD1uaWxl"}};
  for (const char* f : {"ciphertext", "ciphertextMetadata", "initializationVector", "authenticationTag"}) dec[f] = sealed.at(f);
  ASSERT_EQ(call("keys/kms-key/decrypt", dec).first, 200);

  ASSERT_EQ(daemon_->admin_operation("disable-key", {{"name", "xks-key"}}).first, 201);
  auto [refused, error] = call("keys/kms-key/decrypt", dec);
  EXPECT_EQ(refused, 400);
  EXPECT_EQ(error["errorName"], "InvalidStateException") << json::serialize(error);
  EXPECT_EQ(call("keys/kms-key/encrypt", enc).first, 400);
  auto [meta_status, meta] = call("keys/kms-key/metadata", {{"requestMetadata", metadata("DescribeKey", "req-m")}});
  EXPECT_EQ(meta_status, 200);
  EXPECT_EQ(meta["keyStatus"], "DISABLED");

  ASSERT_EQ(daemon_->admin_operation("enable-key", {{"name", "xks-key"}}).first, 201);
  auto [restored, opened] = call("keys/kms-key/decrypt", dec);
  EXPECT_EQ(restored, 200);
  EXPECT_EQ(opened["plaintext"], "SGVsbG8gV29ybGQh");
}

TEST_F(XksListener, RotatedKeyKeepsOldCiphertextsDecryptable) {
  start(false);
  json::object enc{{"requestMetadata", metadata("Encrypt", "req-rot")}, {"plaintext", "AAEC"}, {"encryptionAlgorithm", "AES_GCM"}};
  auto [status, sealed] = call("keys/kms-key/encrypt", enc);
  ASSERT_EQ(status, 200);
  ASSERT_EQ(daemon_->admin_operation("rotate-key", {{"name", "xks-key"}}).first, 201);
  auto [status2, sealed2] = call("keys/kms-key/encrypt", enc);
  ASSERT_EQ(status2, 200);
  EXPECT_NE(sealed["ciphertextMetadata"], sealed2["ciphertextMetadata"]);  // the version is in the metadata
  for (auto* s : {&sealed, &sealed2}) {
    json::object dec{{"requestMetadata", metadata("Decrypt", "req-rot-d")}, {"encryptionAlgorithm", "AES_GCM"}};
    for (const char* f : {"ciphertext", "ciphertextMetadata", "initializationVector", "authenticationTag"}) dec[f] = s->at(f);
    auto [ok, opened] = call("keys/kms-key/decrypt", dec);
    EXPECT_EQ(ok, 200);
    EXPECT_EQ(opened["plaintext"], "AAEC");
  }
}

TEST_F(XksListener, SighupRotatesCredentialsWithoutRestart) {
  start(false);
  const json::object body{{"requestMetadata", metadata("DescribeKey", "req-rotation")}};
  ASSERT_EQ(call("keys/kms-key/metadata", body, kAccessKey2, kSecret2).first, 200);
  write_secret(pki_.path() + "/secret-2", kSecret2Rotated);
  const pid_t before = daemon_->pid();
  ASSERT_EQ(::kill(before, SIGHUP), 0);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (daemon_->log().find("xks credentials reloaded") == std::string::npos && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  ASSERT_NE(daemon_->log().find("xks credentials reloaded"), std::string::npos);
  EXPECT_EQ(daemon_->pid(), before);
  EXPECT_EQ(call("keys/kms-key/metadata", body, kAccessKey2, kSecret2).first, 401);
  EXPECT_EQ(call("keys/kms-key/metadata", body, kAccessKey2, kSecret2Rotated).first, 200);
  EXPECT_EQ(call("keys/kms-key/metadata", body, kAccessKey1, kSecret1).first, 200);  // the other stays
}

TEST_F(XksListener, EveryCallIsAuditedWithKmsRequestIdPrincipalAndResult) {
  start(false);
  json::object enc{{"requestMetadata", metadata("GenerateDataKey", "audit-req-42")},
                   {"plaintext", "AAEC"},
                   {"encryptionAlgorithm", "AES_GCM"}};
  ASSERT_EQ(call("keys/kms-key/encrypt", enc).first, 200);
  ASSERT_EQ(call("keys/kms-key/encrypt", enc, kAccessKey1, std::string(43, 'w')).first, 401);
  // Fields requestMetadata may gain later are accepted and named in the record.
  json::object future = enc;
  future["requestMetadata"].as_object()["kmsRequestId"] = "audit-req-future";
  future["requestMetadata"].as_object()["someFutureField"] = "x";
  ASSERT_EQ(call("keys/kms-key/encrypt", future).first, 200);
  bool ok_record = false, refused_record = false, future_record = false;
  for (const auto& r : daemon_->audit_records()) {
    if (r.at("type") != "xks.encrypt") continue;
    if (r.at("result") == "ok" && r.at("kmsRequestId") == "audit-req-42") {
      ok_record = true;
      EXPECT_EQ(r.at("key"), "xks-key");
      EXPECT_EQ(r.at("kmsOperation"), "GenerateDataKey");
      EXPECT_EQ(r.at("awsPrincipalArn"), "arn:aws:iam::111122223333:role/app");
      EXPECT_EQ(r.at("access_key_id"), kAccessKey1);
      EXPECT_TRUE(r.at("duration_us").is_int64());
      EXPECT_EQ(r.at("client").at("uid").to_number<int>(), kXksUid);
    }
    if (r.at("result") == "AuthenticationFailedException") refused_record = true;
    if (r.contains("kmsRequestId") && r.at("kmsRequestId") == "audit-req-future") {
      future_record = true;
      EXPECT_EQ(json::serialize(r.at("unknown_metadata")), R"(["someFutureField"])");
    }
  }
  EXPECT_TRUE(ok_record);
  EXPECT_TRUE(refused_record);
  EXPECT_TRUE(future_record);
  // Per route and errorName, with latency, on /metrics.
  auto metrics = daemon_->service().call("GET", "/metrics");
  ASSERT_TRUE(metrics);
  EXPECT_NE(metrics->body.find(R"(custody_requests_total{socket="xks",operation="encrypt",code="200"} 2)"), std::string::npos);
  EXPECT_NE(metrics->body.find(R"(operation="encrypt:AuthenticationFailedException",code="401"} 1)"), std::string::npos);
}

TEST_F(XksListener, TcpPeerOverItsConnectionBudgetGets429AndOthersAreServed) {
  start(false, "  max_connections_per_uid: 2\n");
  const int a = connect_raw(), b = connect_raw();
  ASSERT_GE(a, 0);
  ASSERT_GE(b, 0);
  // Both slots are taken once the server has accepted them: a request on each proves it.
  const std::string ping = "GET /ping HTTP/1.1\r\nHost: x\r\n\r\n";
  for (int fd : {a, b}) {
    ASSERT_EQ(::send(fd, ping.data(), ping.size(), 0), static_cast<ssize_t>(ping.size()));
    char buf[512];
    ASSERT_GT(::recv(fd, buf, sizeof buf, 0), 0);
  }
  const int c = connect_raw();
  ASSERT_GE(c, 0);
  const std::string refused = read_all(c);
  EXPECT_EQ(refused.rfind("HTTP/1.1 429", 0), 0u) << refused;
  EXPECT_NE(refused.find(R"("errorName":"ThrottlingException")"), std::string::npos) << refused;
  ::close(c);
  ::close(a);
  // A slot given back is usable again.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  int status = -1;
  while (status != 200 && std::chrono::steady_clock::now() < deadline) {
    status = call("keys/kms-key/metadata", {{"requestMetadata", metadata("DescribeKey", "budget")}}).first;
    if (status != 200) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(status, 200);
  ::close(b);
}

TEST_F(XksListener, SilentTcpConnectionIsClosedAfterTheFirstByteTimeout) {
  start(false, "  first_byte_timeout: 300ms\n");
  const int fd = connect_raw();
  ASSERT_GE(fd, 0);
  char byte;
  EXPECT_EQ(::recv(fd, &byte, 1, 0), 0);  // closed by the server (the read is bounded at 10 s)
  ::close(fd);
  EXPECT_EQ(call("health", {{"requestMetadata", metadata("KmsHealthCheck", "after-slowloris")}}).first, 200);
}

TEST_F(XksListener, MalformedAndOversizedRequestsGetXksErrorsAndTheListenerServesOn) {
  start(false);
  const int fd = connect_raw();
  ASSERT_GE(fd, 0);
  const std::string smuggled = "POST /test/prefix/kms/xks/v1/health HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
                               "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
  ASSERT_EQ(::send(fd, smuggled.data(), smuggled.size(), 0), static_cast<ssize_t>(smuggled.size()));
  const std::string answer = read_all(fd);
  ::close(fd);
  EXPECT_EQ(answer.rfind("HTTP/1.1 400", 0), 0u) << answer;
  EXPECT_NE(answer.find(R"("errorName":"ValidationException")"), std::string::npos) << answer;
  auto [status, body] = call("keys/kms-key/encrypt", {{"requestMetadata", metadata("Encrypt", "big")},
                                                      {"plaintext", std::string(90'000, 'A')},
                                                      {"encryptionAlgorithm", "AES_GCM"}});
  EXPECT_EQ(status, 400);
  EXPECT_EQ(body["errorName"], "ValidationException");
  EXPECT_EQ(call("health", {{"requestMetadata", metadata("KmsHealthCheck", "after")}}).first, 200);
}

TEST_F(XksListener, CustodyctlPrintsTheConsoleProxyConfigurationFile) {
  start(false);
  auto r = run(std::string(CUSTODYCTL_PATH) + " xks credentials --config " + daemon_->config_path() +
               " --access-key-id " + kAccessKey2 + " --endpoint https://xks.example.com");
  ASSERT_EQ(r.status, 0) << r.out;
  auto file = json::parse(r.out).as_object();
  EXPECT_EQ(file["XksProxyUriEndpoint"], "https://xks.example.com");
  EXPECT_EQ(file["XksProxyUriPath"], "/test/prefix/kms/xks/v1");
  EXPECT_EQ(file["XksProxyAuthenticationCredential"].at("AccessKeyId"), kAccessKey2);
  EXPECT_EQ(file["XksProxyAuthenticationCredential"].at("RawSecretAccessKey"), kSecret2);
  EXPECT_NE(run(std::string(CUSTODYCTL_PATH) + " xks credentials --config " + daemon_->config_path() +
                " --access-key-id AKIANOSUCHKEY2345672").status, 0);
}

TEST_F(XksListener, SecondaryAuthorizationDeniesWhatNoRuleAllowsAndSaysWhy) {
  start(false, "", "  authorization:\n"
                   "    - {name: app-only, keys: [kms-key], principals: [\"arn:aws:iam::*:role/app\"]}\n");
  json::object allowed{{"requestMetadata", metadata("Encrypt", "authz-ok")}, {"plaintext", "AAEC"}, {"encryptionAlgorithm", "AES_GCM"}};
  EXPECT_EQ(call("keys/kms-key/encrypt", allowed).first, 200);
  json::object other = allowed;
  other["requestMetadata"].as_object()["awsPrincipalArn"] = "arn:aws:iam::111122223333:user/mallory";
  other["requestMetadata"].as_object()["kmsRequestId"] = "authz-denied";
  auto [status, error] = call("keys/kms-key/encrypt", other);
  EXPECT_EQ(status, 403);
  EXPECT_EQ(error["errorName"], "AccessDeniedException");
  EXPECT_EQ(call("keys/kms-enc/encrypt", allowed).first, 403);  // the rule names one key
  // GetHealthStatus is outside secondary authorization (the spec).
  EXPECT_EQ(call("health", {{"requestMetadata", metadata("KmsHealthCheck", "authz-h")}}).first, 200);
  bool logged = false;
  for (const auto& r : daemon_->audit_records())
    if (r.contains("kmsRequestId") && r.at("kmsRequestId") == "authz-denied") {
      logged = true;
      EXPECT_EQ(r.at("result"), "AccessDeniedException");
      EXPECT_EQ(json::serialize(r.at("denied_by")), R"(["app-only: awsPrincipalArn does not match"])");
    }
  EXPECT_TRUE(logged);
}

TEST_F(XksListener, HealthIsDeepActiveOnlyWhileTheTokenCanUseTheHealthKey) {
  start(false, "", "  health_cache: 0s\n");
  auto health = [&] {
    auto [status, body] = call("health", {{"requestMetadata", metadata("KmsHealthCheck", "deep")}});
    EXPECT_EQ(status, 200);
    EXPECT_EQ(body["xksProxyFleetSize"], 1) << "one host, not a fleet";
    return std::string(body["ekmFleetDetails"].as_array().at(0).at("healthStatus").as_string());
  };
  EXPECT_EQ(health(), "ACTIVE");
  ASSERT_EQ(daemon_->admin_operation("disable-key", {{"name", "xks-health"}}).first, 201);
  EXPECT_EQ(health(), "UNAVAILABLE");  // no shallow "always ACTIVE": the check really used the key
  ASSERT_EQ(daemon_->admin_operation("enable-key", {{"name", "xks-health"}}).first, 201);
  EXPECT_EQ(health(), "ACTIVE");
}

// KMS allows 250 ms per call: a token that is up but slower than that (the shim adds 130 ms to each
// C_GenerateRandom, C_Encrypt and C_Decrypt of the probe) is DEGRADED, not ACTIVE.
TEST_F(XksListener, HealthIsDegradedWhenTheProbeTakesLongerThanKmsAllows) {
  options_.module = CUSTODY_FAULT_SHIM;
  options_.env["CUSTODY_SHIM_LATENCY_US"] = "130000";
  start(false, "", "  health_cache: 0s\n");
  auto [status, body] = call("health", {{"requestMetadata", metadata("KmsHealthCheck", "slow")}});
  EXPECT_EQ(status, 200);
  EXPECT_EQ(body["ekmFleetDetails"].as_array().at(0).at("healthStatus"), "DEGRADED") << json::serialize(body);
  EXPECT_NE(daemon_->log().find("over KMS's 250 ms budget"), std::string::npos) << daemon_->log();
}

TEST_F(XksListener, AnAuditLogThatCannotBeWrittenAnswersDependencyTimeoutAndRunsNothing) {
  start(false);
  json::object enc{{"requestMetadata", metadata("Encrypt", "fill")}, {"plaintext", "AAEC"}, {"encryptionAlgorithm", "AES_GCM"}};
  ASSERT_EQ(call("keys/kms-key/encrypt", enc).first, 200);
  // No file may grow past a few records beyond the audit log's size now (XKS calls write no state).
  const std::uintmax_t audit_bytes = std::filesystem::file_size(daemon_->audit_path());
  rlimit limit{audit_bytes + 4096, audit_bytes + 4096};
  ASSERT_EQ(::prlimit(daemon_->pid(), RLIMIT_FSIZE, &limit, nullptr), 0);
  int status = 200;
  json::object error;
  for (int i = 0; i < 100 && status == 200; ++i) std::tie(status, error) = call("keys/kms-key/encrypt", enc);
  ASSERT_EQ(status, 503) << "the audit log never filled up";
  EXPECT_EQ(error["errorName"], "DependencyTimeoutException");
  auto [again, body] = call("keys/kms-key/encrypt", enc);
  EXPECT_EQ(again, 503);
  EXPECT_EQ(body["errorName"], "DependencyTimeoutException");
}

TEST_F(XksListener, SighupReloadsTheServerCertificateForNewConnections) {
  start(true);
  const std::string& p = pki_.path();
  const std::string port = endpoint_.substr(endpoint_.rfind(':') + 1);
  auto served_serial = [&] {
    return run("openssl s_client -connect 127.0.0.1:" + port + " -cert " + p + "/client.pem -key " + p +
               "/client.key -CAfile " + p + "/ca.pem </dev/null 2>/dev/null | openssl x509 -noout -serial")
        .out;
  };
  const std::string before = served_serial();
  ASSERT_NE(before.find("serial="), std::string::npos) << before;
  // A new server certificate from the same CA (a new serial), then SIGHUP.
  ASSERT_EQ(run("openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout " + p + "/server.key -out " + p +
                "/renewed.csr -subj /CN=localhost && openssl x509 -req -in " + p + "/renewed.csr -CA " + p + "/ca.pem -CAkey " +
                p + "/ca.key -CAcreateserial -days 2 -extfile " + p + "/server.ext -out " + p + "/server.pem").status, 0);
  ASSERT_EQ(::kill(daemon_->pid(), SIGHUP), 0);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (daemon_->log().find("xks TLS certificate reloaded") == std::string::npos && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  ASSERT_NE(daemon_->log().find("xks TLS certificate reloaded"), std::string::npos) << daemon_->log();
  const std::string after = served_serial();
  EXPECT_NE(after.find("serial="), std::string::npos) << after;
  EXPECT_NE(after, before);
  EXPECT_EQ(call_tls_health(), 200);
}

// `custodyd --check-config` loads the xks section's files as the listener would, starting nothing:
// each broken file is one message naming the setting and the fix; the working config passes.
TEST_F(XksListener, CheckConfigFindsEachBrokenXksFileAndPassesAWorkingConfig) {
  start(true);
  const std::string& p = pki_.path();
  const std::string good = read_file(daemon_->config_path());
  auto check = [&](const std::string& from, const std::string& to) {
    std::string yaml = good;
    if (!from.empty()) {
      const auto at = yaml.find(from);
      EXPECT_NE(at, std::string::npos) << from;
      if (at != std::string::npos) yaml.replace(at, from.size(), to);
    }
    write_file(p + "/check.yaml", yaml);
    return run(std::string(CUSTODYD_PATH) + " --check-config -c " + p + "/check.yaml");
  };
  auto ok = check("", "");
  EXPECT_EQ(ok.status, 0) << ok.out;
  EXPECT_NE(ok.out.find("configuration is valid"), std::string::npos) << ok.out;

  auto missing = check(p + "/server.pem", p + "/no-such-cert.pem");
  EXPECT_EQ(missing.status, 2) << missing.out;
  EXPECT_NE(missing.out.find("xks.tls.certificate: TLS: cannot use the certificate " + p + "/no-such-cert.pem"),
            std::string::npos) << missing.out;
  EXPECT_NE(missing.out.find("1 problem(s)"), std::string::npos) << missing.out;

  auto mismatch = check(p + "/server.key", p + "/client.key");  // a good key, of another certificate
  EXPECT_EQ(mismatch.status, 2) << mismatch.out;
  EXPECT_NE(mismatch.out.find("xks.tls.private_key: TLS: the private key " + p + "/client.key does not match"),
            std::string::npos) << mismatch.out;
  EXPECT_NE(mismatch.out.find("give the PEM private key of the certificate"), std::string::npos) << mismatch.out;
  EXPECT_NE(mismatch.out.find("1 problem(s)"), std::string::npos) << mismatch.out;

  write_file(p + "/secret-open", std::string(kSecret1) + "\n");
  ASSERT_EQ(::chmod((p + "/secret-open").c_str(), 0644), 0);
  auto readable = check(p + "/secret-1", p + "/secret-open");
  EXPECT_EQ(readable.status, 2) << readable.out;
  EXPECT_NE(readable.out.find(std::string("xks.credentials[0] (") + kAccessKey1 + "): the XKS secret " + p +
                              "/secret-open is readable by others; chmod 0400 or 0600"),
            std::string::npos) << readable.out;
  EXPECT_NE(readable.out.find("1 problem(s)"), std::string::npos) << readable.out;

  auto ca = check(p + "/ca.pem", p + "/server.key");  // not a certificate
  EXPECT_EQ(ca.status, 2) << ca.out;
  EXPECT_NE(ca.out.find("xks.tls.client_ca:"), std::string::npos) << ca.out;
}

// The mapping in xks.keys names a key; it grants nothing by itself. Usage comes only from the
// key's policy rules for acts_as_uid, which only dual control changes.
TEST_F(XksListener, AMappedKeyWithoutAPolicyRuleForTheXksUidAllowsNoUsage) {
  start(false);
  ASSERT_EQ(daemon_->create_key("xks-unruled", "aes-256-gcm", R"([{"uid":0,"operations":["wrap","unwrap"]}])"), 201);
  auto [status, meta] = call("keys/kms-unruled/metadata", {{"requestMetadata", metadata("DescribeKey", "unruled-m")}});
  ASSERT_EQ(status, 200) << json::serialize(meta);
  EXPECT_TRUE(meta["keyUsage"].as_array().empty()) << json::serialize(meta);
  json::object enc{{"requestMetadata", metadata("Encrypt", "unruled-e")}, {"plaintext", "AAEC"}, {"encryptionAlgorithm", "AES_GCM"}};
  auto [refused, error] = call("keys/kms-unruled/encrypt", enc);
  EXPECT_EQ(refused, 400);
  EXPECT_EQ(error["errorName"], "InvalidKeyUsageException") << json::serialize(error);
  // A ciphertext of another key, to the decrypt route: refused for usage before any token call.
  auto [sealed_status, sealed] = call("keys/kms-key/encrypt", enc);
  ASSERT_EQ(sealed_status, 200);
  json::object dec{{"requestMetadata", metadata("Decrypt", "unruled-d")}, {"encryptionAlgorithm", "AES_GCM"}};
  for (const char* f : {"ciphertext", "ciphertextMetadata", "initializationVector", "authenticationTag"}) dec[f] = sealed.at(f);
  auto [refused_dec, error_dec] = call("keys/kms-unruled/decrypt", dec);
  EXPECT_EQ(refused_dec, 400);
  EXPECT_EQ(error_dec["errorName"], "InvalidKeyUsageException") << json::serialize(error_dec);
  // Granted through dual control (set-policy), the same mapping now encrypts.
  ASSERT_EQ(daemon_->admin_operation("set-policy", {{"name", "xks-unruled"},
                                                    {"policy", json::parse("[{\"uid\":" + std::to_string(kXksUid) +
                                                                           ",\"operations\":[\"wrap\"]}]")}}).first, 201);
  EXPECT_EQ(call("keys/kms-unruled/encrypt", enc).first, 200);
}

// An HSM that makes its AES-GCM IVs itself (the fault shim acting as one: it refuses custody's IV
// with CKR_MECHANISM_PARAM_INVALID and fills a zeroed one, or with "overwrite" replaces custody's
// IV silently): XKS Encrypt answers the token's IV, and Decrypt with it gives the plaintext back.
// Deep health goes the same way.
class XksTokenMadeIv : public XksListener, public ::testing::WithParamInterface<const char*> {};

TEST_P(XksTokenMadeIv, TheEncryptReplyHasTheTokensIvAndDecrypts) {
  const std::string iv_file = pki_.path() + "/token-iv";
  const bool refuses = std::string(GetParam()) == "refuse";
  options_.module = CUSTODY_FAULT_SHIM;
  options_.env["CUSTODY_SHIM_GCM_IV_FROM_TOKEN"] = GetParam();
  options_.env["CUSTODY_SHIM_GCM_IV_FILE"] = iv_file;
  start(false, "", "  health_cache: 0s\n");
  json::object enc{{"requestMetadata", metadata("Encrypt", "token-iv")},
                   {"plaintext", "SGVsbG8gV29ybGQh"},
                   {"encryptionAlgorithm", "AES_GCM"},
                   {"additionalAuthenticatedData", "cHJvamVjdD1uaWxl"},
                   {"ciphertextDataIntegrityValueAlgorithm", "SHA_256"}};
  for (int round = 0; round < 2; ++round) {  // the first call learns the quirk, the second uses it
    std::filesystem::remove(iv_file);
    auto [status, sealed] = call("keys/kms-key/encrypt", enc);
    ASSERT_EQ(status, 200) << json::serialize(sealed);
    EXPECT_TRUE(sealed.contains("ciphertextDataIntegrityValue"));
    auto iv = base64_decode(std::string_view(sealed.at("initializationVector").as_string()));
    ASSERT_TRUE(iv);
    ASSERT_EQ(iv->size(), 12u);
    std::string hex;
    for (auto b : *iv) {
      char two[3];
      std::snprintf(two, sizeof two, "%02x", b);
      hex += two;
    }
    EXPECT_EQ(hex, read_file(iv_file)) << "the reply's IV is not the one the token made";
    json::object dec{{"requestMetadata", metadata("Decrypt", "token-iv-d")},
                     {"encryptionAlgorithm", "AES_GCM"},
                     {"additionalAuthenticatedData", "cHJvamVjdD1uaWxl"}};
    for (const char* f : {"ciphertext", "ciphertextMetadata", "initializationVector", "authenticationTag"}) dec[f] = sealed.at(f);
    auto [opened_status, opened] = call("keys/kms-key/decrypt", dec);
    EXPECT_EQ(opened_status, 200) << json::serialize(opened);
    EXPECT_EQ(opened["plaintext"], "SGVsbG8gV29ybGQh");
  }
  // Only a refusal is learned (and logged); an overwriting token needs nothing learned.
  EXPECT_EQ(daemon_->log().find("makes its own") != std::string::npos, refuses) << daemon_->log();
  auto [health_status, health] = call("health", {{"requestMetadata", metadata("KmsHealthCheck", "token-iv-h")}});
  EXPECT_EQ(health_status, 200);
  EXPECT_EQ(health["ekmFleetDetails"].as_array().at(0).at("healthStatus"), "ACTIVE") << json::serialize(health);
}

INSTANTIATE_TEST_SUITE_P(RefusingOrOverwriting, XksTokenMadeIv, ::testing::Values("refuse", "overwrite"));

// A token failure that is no fault of the request (here C_Decrypt answering CKR_FUNCTION_FAILED)
// is an InternalException (500), never an answer about the ciphertext.
TEST_F(XksListener, ATokenThatFailsAnOperationAnswersInternalException) {
  const std::string rv_file = pki_.path() + "/decrypt-rv";
  options_.module = CUSTODY_FAULT_SHIM;
  options_.env["CUSTODY_SHIM_DECRYPT_RV_FILE"] = rv_file;
  start(false);
  json::object enc{{"requestMetadata", metadata("Encrypt", "internal")}, {"plaintext", "AAEC"}, {"encryptionAlgorithm", "AES_GCM"}};
  auto [status, sealed] = call("keys/kms-key/encrypt", enc);
  ASSERT_EQ(status, 200) << json::serialize(sealed);
  json::object dec{{"requestMetadata", metadata("Decrypt", "internal-d")}, {"encryptionAlgorithm", "AES_GCM"}};
  for (const char* f : {"ciphertext", "ciphertextMetadata", "initializationVector", "authenticationTag"}) dec[f] = sealed.at(f);
  write_file(rv_file, "0x6");  // CKR_FUNCTION_FAILED
  auto [failed, error] = call("keys/kms-key/decrypt", dec);
  std::filesystem::remove(rv_file);
  EXPECT_EQ(failed, 500);
  EXPECT_EQ(error["errorName"], "InternalException") << json::serialize(error);
  EXPECT_EQ(call("keys/kms-key/decrypt", dec).first, 200);  // the listener and the token serve on
}

// A secret from a systemd credential (LoadCredential=: $CREDENTIALS_DIRECTORY/NAME) signs as well as
// one from a file; `--check-config` reads it there too.
TEST_F(XksListener, ASecretFromASystemdCredentialAuthenticates) {
  const std::string credentials = pki_.path() + "/credentials";
  ASSERT_TRUE(std::filesystem::create_directory(credentials));
  write_file(credentials + "/xks-secret-2", std::string(kSecret2) + "\n");
  options_.env["CREDENTIALS_DIRECTORY"] = credentials;
  second_credential_ = std::string("    - {access_key_id: ") + kAccessKey2 + ", secret_credential: xks-secret-2}\n";
  start(false);
  const json::object body{{"requestMetadata", metadata("DescribeKey", "credential")}};
  EXPECT_EQ(call("keys/kms-key/metadata", body, kAccessKey2, kSecret2).first, 200);
  EXPECT_EQ(call("keys/kms-key/metadata", body, kAccessKey2, kSecret1).first, 401);
  write_file(credentials + "/xks-secret-2", "short\n");
  auto r = run("CREDENTIALS_DIRECTORY=" + credentials + " " + std::string(CUSTODYD_PATH) + " --check-config -c " +
               daemon_->config_path());
  EXPECT_EQ(r.status, 2) << r.out;
  EXPECT_NE(r.out.find("xks.credentials[1] (" + std::string(kAccessKey2) + "): the XKS secret " + credentials +
                       "/xks-secret-2 must be one line of 43 to 64 characters"),
            std::string::npos) << r.out;
}

// xks.tls.client_subject: a client certificate from the accepted CA but with another subject is
// closed after the handshake; the accepted subject is served.
TEST_F(XksListener, MutualTlsServesOnlyTheAcceptedClientSubject) {
  tls_extra_ = "    client_subject: \"CN=kms-test-client\"\n";
  start(true);
  const std::string& p = pki_.path();
  ASSERT_EQ(run("openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout " + p + "/other.key -out " + p +
                "/other.csr -subj /CN=another-client && openssl x509 -req -in " + p + "/other.csr -CA " + p +
                "/ca.pem -CAkey " + p + "/ca.key -CAcreateserial -days 2 -extfile " + p + "/client.ext -out " + p +
                "/other.pem").status, 0);
  auto ping = [&](const std::string& who) {
    return run("curl -sS -o /dev/null -w '%{http_code}' --max-time 10 --cacert " + p + "/ca.pem --cert " + p + "/" + who +
               ".pem --key " + p + "/" + who + ".key " + endpoint_ + "/ping");
  };
  auto accepted = ping("client");
  EXPECT_EQ(accepted.status, 0) << accepted.out;
  EXPECT_EQ(accepted.out, "200");
  auto other = ping("other");
  EXPECT_NE(other.out, "200") << "a client of another subject was served";
  // The accepted subject is whole RDNs, not a substring: a longer CN that starts the same is refused.
  ASSERT_EQ(run("openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout " + p + "/longer.key -out " + p +
                "/longer.csr -subj /CN=kms-test-client-evil && openssl x509 -req -in " + p + "/longer.csr -CA " + p +
                "/ca.pem -CAkey " + p + "/ca.key -CAcreateserial -days 2 -extfile " + p + "/client.ext -out " + p +
                "/longer.pem").status, 0);
  auto longer = ping("longer");
  EXPECT_NE(longer.out, "200") << "CN=kms-test-client-evil was served as CN=kms-test-client";
  EXPECT_NE(daemon_->log().find("not the accepted 'CN=kms-test-client'"), std::string::npos) << daemon_->log();
}

TEST(XksConfig, SecretsInTheConfigurationAreRefused) {
  TempDir dir;
  const std::string path = dir.path() + "/c.yaml";
  write_file(path,
             "token: {module: /x.so, label: t, pin: {file: /p}}\nstate: {path: /s}\naudit: {path: /a}\n"
             "xks:\n  plain_http: true\n  region: us-east-1\n  acts_as_uid: 1\n  health_key: h\n"
             "  credentials:\n    - {access_key_id: AKIAXKSTESTONE2345672, secret_access_key: inline}\n");
  auto r = run(std::string(CUSTODYD_PATH) + " --check-config --syntax-only -c " + path);
  EXPECT_EQ(r.status, 2) << r.out;
  EXPECT_NE(r.out.find("xks.credentials[0].secret_access_key"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("must not be in the configuration"), std::string::npos) << r.out;
}

}  // namespace
}  // namespace custody::test
