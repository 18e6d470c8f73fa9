// Issue #12 part 1: the Kubernetes KMS v2 socket (CONTRACT §10) of a real custodyd on a fresh
// SoftHSMv2 token, called by a gRPC client generated from the same daemon/kms/api.proto that
// kube-apiserver's own client is generated from upstream.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <grpcpp/create_channel.h>
#include <grpcpp/create_channel_posix.h>
#include <grpcpp/grpcpp.h>
#include <thread>

#include "api.grpc.pb.h"
#include "tests/support/daemon_process.h"

using namespace custody::test;
namespace json = boost::json;

namespace {

constexpr char kKey[] = "k8s-secrets";

std::string kms_socket(const Daemon& d) { return d.dir() + "/kms.sock"; }

// The harness writes sockets.service and sockets.admin; the KMS socket and its kms section are
// added to the written configuration and custodyd restarted on it (after the key exists, so that
// the restart also shows the socket picks up keys from the state).
void serve_kms(Daemon& d, const std::string& healthz_interval = "10s") {
  ASSERT_EQ(d.terminate(), 0);
  std::string yaml = read_file(d.config_path());
  const auto admin = yaml.find("  admin: {path: ");
  ASSERT_NE(admin, std::string::npos);
  const auto line_end = yaml.find('\n', admin);
  // nogroup may connect, so that the other-uid test reaches the daemon and meets its policy.
  yaml.insert(line_end + 1, "  kms: {path: " + kms_socket(d) + ", mode: \"0660\", group: nogroup}\n");
  yaml += std::string("kms:\n  key: ") + kKey + "\n  healthz_interval: " + healthz_interval + "\n";
  write_file(d.config_path(), yaml);
  d.start();
}

std::unique_ptr<v2::KeyManagementService::Stub> connect(const Daemon& d) {
  return v2::KeyManagementService::NewStub(
      grpc::CreateChannel("unix://" + kms_socket(d), grpc::InsecureChannelCredentials()));
}

// Every call is bounded: a daemon that does not answer fails the test instead of hanging it.
void bound(grpc::ClientContext& c) { c.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10)); }

grpc::Status status(v2::KeyManagementService::Stub& kms, v2::StatusResponse& out) {
  grpc::ClientContext c;
  bound(c);
  return kms.Status(&c, v2::StatusRequest{}, &out);
}

grpc::Status encrypt(v2::KeyManagementService::Stub& kms, const std::string& plaintext, const std::string& uid,
                     v2::EncryptResponse& out) {
  grpc::ClientContext c;
  bound(c);
  v2::EncryptRequest req;
  req.set_plaintext(plaintext);
  req.set_uid(uid);
  return kms.Encrypt(&c, req, &out);
}

grpc::Status decrypt(v2::KeyManagementService::Stub& kms, const std::string& ciphertext, const std::string& key_id,
                     const std::string& uid, v2::DecryptResponse& out) {
  grpc::ClientContext c;
  bound(c);
  v2::DecryptRequest req;
  req.set_ciphertext(ciphertext);
  req.set_key_id(key_id);
  req.set_uid(uid);
  return kms.Decrypt(&c, req, &out);
}

std::string describe(const grpc::Status& s) { return std::to_string(s.error_code()) + " " + s.error_message(); }

const json::object* audit_record(const Daemon& d, const std::string& type, const std::string& request_id,
                                 std::vector<json::object>& records) {
  records = d.audit_records();
  for (const auto& r : records)
    if (r.at("type").as_string() == type && r.at("request_id").as_string() == request_id) return &r;
  return nullptr;
}

}  // namespace

TEST(KmsE2E, StatusEncryptDecryptAndRotationChangesTheKeyIdWhileOldCiphertextsStillDecrypt) {
  Daemon d;
  ASSERT_EQ(d.create_key(kKey, "aes-256-gcm", allow_me_everything()), 201);
  serve_kms(d);
  auto kms = connect(d);

  v2::StatusResponse st;
  ASSERT_TRUE(status(*kms, st).ok());
  EXPECT_EQ(st.version(), "v2");
  EXPECT_EQ(st.healthz(), "ok");
  EXPECT_EQ(st.key_id(), std::string(kKey) + "/v1");

  const std::string dek_seed(32, '\x5a');
  v2::EncryptResponse sealed;
  auto s = encrypt(*kms, dek_seed, "3f1c2a9e-uid-encrypt-1", sealed);
  ASSERT_TRUE(s.ok()) << describe(s);
  EXPECT_EQ(sealed.key_id(), std::string(kKey) + "/v1");
  EXPECT_TRUE(sealed.annotations().empty());
  // The §4 blob: "CST" 0x01, the key name, version 1; 12-byte IV, ciphertext and 16-byte tag.
  const std::string header = std::string("CST\x01", 4) + char(sizeof kKey - 1) + kKey + std::string("\0\0\0\x01", 4);
  ASSERT_EQ(sealed.ciphertext().size(), header.size() + 12 + dek_seed.size() + 16);
  EXPECT_EQ(sealed.ciphertext().substr(0, header.size()), header);

  v2::DecryptResponse opened;
  s = decrypt(*kms, sealed.ciphertext(), sealed.key_id(), "3f1c2a9e-uid-decrypt-1", opened);
  ASSERT_TRUE(s.ok()) << describe(s);
  EXPECT_EQ(opened.plaintext(), dek_seed);

  // Each call is audited like a wrap/unwrap on the service socket, under kube-apiserver's uid.
  std::vector<json::object> records;
  const auto* wrap = audit_record(d, "wrap", "3f1c2a9e-uid-encrypt-1", records);
  ASSERT_NE(wrap, nullptr) << "no audit record carries the Encrypt uid as request_id";
  EXPECT_EQ(wrap->at("result").as_string(), "ok");
  EXPECT_EQ(wrap->at("key").as_string(), kKey);
  EXPECT_EQ(wrap->at("version").as_int64(), 1);
  EXPECT_EQ(wrap->at("via").as_string(), "kms");
  EXPECT_EQ(wrap->at("client").at("uid").as_int64(), static_cast<std::int64_t>(::getuid()));
  const auto* unwrap = audit_record(d, "unwrap", "3f1c2a9e-uid-decrypt-1", records);
  ASSERT_NE(unwrap, nullptr);
  EXPECT_EQ(unwrap->at("result").as_string(), "ok");

  // Rotation through dual control: the next Status and Encrypt name version 2.
  ASSERT_EQ(d.admin_operation("rotate-key", {{"name", kKey}}).first, 201);
  ASSERT_TRUE(status(*kms, st).ok());
  EXPECT_EQ(st.key_id(), std::string(kKey) + "/v2");
  EXPECT_EQ(st.healthz(), "ok");
  v2::EncryptResponse sealed2;
  ASSERT_TRUE(encrypt(*kms, "after rotation", "uid-after", sealed2).ok());
  EXPECT_EQ(sealed2.key_id(), std::string(kKey) + "/v2");
  // The version-1 ciphertext still decrypts, whatever key_id the caller sends with it.
  s = decrypt(*kms, sealed.ciphertext(), std::string(kKey) + "/v2", "uid-old", opened);
  ASSERT_TRUE(s.ok()) << describe(s);
  EXPECT_EQ(opened.plaintext(), dek_seed);
  s = decrypt(*kms, sealed2.ciphertext(), "", "uid-new", opened);
  ASSERT_TRUE(s.ok()) << describe(s);
  EXPECT_EQ(opened.plaintext(), "after rotation");

  // A tampered ciphertext is the caller's error, not the daemon's.
  std::string tampered = sealed.ciphertext();
  tampered.back() ^= 1;
  EXPECT_EQ(decrypt(*kms, tampered, sealed.key_id(), "uid-tampered", opened).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(decrypt(*kms, "not a blob", "", "uid-garbage", opened).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  ASSERT_NE(audit_record(d, "unwrap", "uid-tampered", records), nullptr);
  // gRPC takes no message larger than the service socket's body limit (65536 here).
  EXPECT_EQ(encrypt(*kms, std::string(70'000, 'x'), "uid-big", sealed2).error_code(),
            grpc::StatusCode::RESOURCE_EXHAUSTED);
  // And still serves.
  EXPECT_TRUE(status(*kms, st).ok());
}

TEST(KmsE2E, AnUnavailableTokenFailsHealthzAndEncryptWithUnavailableUntilItReturns) {
  DaemonOptions o;
  o.module = CUSTODY_FAULT_SHIM;
  TempDir faults;
  const std::string fault_file = faults.path() + "/unplugged";
  o.env["CUSTODY_SHIM_FAULT_FILE"] = fault_file;
  Daemon d(o);
  ASSERT_EQ(d.create_key(kKey, "aes-256-gcm", allow_me_everything()), 201);
  serve_kms(d, "1s");
  auto kms = connect(d);
  v2::StatusResponse st;
  ASSERT_TRUE(status(*kms, st).ok());
  ASSERT_EQ(st.healthz(), "ok");

  write_file(fault_file, "");  // the token is unplugged
  v2::EncryptResponse sealed;
  auto s = encrypt(*kms, "secret", "uid-unplugged", sealed);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE) << describe(s);
  // healthz turns once the last good probe is older than the interval (1 s).
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (st.healthz() == "ok" && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    ASSERT_TRUE(status(*kms, st).ok());
  }
  EXPECT_NE(st.healthz(), "ok");
  EXPECT_NE(st.healthz().find("unavailable"), std::string::npos) << st.healthz();
  EXPECT_EQ(st.key_id(), std::string(kKey) + "/v1");
  std::vector<json::object> records;
  const auto* refused = audit_record(d, "wrap", "uid-unplugged", records);
  ASSERT_NE(refused, nullptr);
  EXPECT_EQ(refused->at("result").as_string(), "unavailable");

  std::filesystem::remove(fault_file);  // plugged in again: healthz recovers by itself
  const auto back = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (st.healthz() != "ok" && std::chrono::steady_clock::now() < back) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    ASSERT_TRUE(status(*kms, st).ok());
  }
  EXPECT_EQ(st.healthz(), "ok");
  s = encrypt(*kms, "secret", "uid-replugged", sealed);
  EXPECT_TRUE(s.ok()) << describe(s);
}

TEST(KmsE2E, APeerTheKeysPolicyDoesNotNameIsRefusedPermissionDenied) {
  if (::getuid() != 0)
    GTEST_FAIL() << "this test connects as uid 65534 and so must run as root (as CI does); it did NOT run";
  Daemon d;
  ASSERT_EQ(d.create_key(kKey, "aes-256-gcm", allow_me_everything()), 201);
  serve_kms(d);
  ASSERT_EQ(::chmod(d.dir().c_str(), 0755), 0);
  // The socket is made here and connected by a child acting as uid 65534: SO_PEERCRED is taken
  // at connect(), so the daemon sees uid 65534 while this (gRPC-running) process does the talking.
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(fd, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, kms_socket(d).c_str(), sizeof addr.sun_path - 1);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    const bool ok = ::setgid(65534) == 0 && ::setuid(65534) == 0 &&
                    ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
    ::_exit(ok ? 0 : 1);
  }
  int child_status = 0;
  ASSERT_EQ(::waitpid(child, &child_status, 0), child);
  ASSERT_TRUE(WIFEXITED(child_status) && WEXITSTATUS(child_status) == 0) << "uid 65534 could not connect";
  ASSERT_EQ(::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK), 0);
  auto nobody = v2::KeyManagementService::NewStub(grpc::CreateInsecureChannelFromFd("kms", fd));

  v2::EncryptResponse sealed;
  auto s = encrypt(*nobody, "secret", "uid-nobody", sealed);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED) << describe(s);
  EXPECT_NE(s.error_message().find("uid 65534"), std::string::npos) << s.error_message();
  v2::StatusResponse st;
  EXPECT_EQ(status(*nobody, st).error_code(), grpc::StatusCode::PERMISSION_DENIED);
  // A ciphertext made by the allowed peer does not open for this one either.
  auto kms = connect(d);
  v2::EncryptResponse mine;
  ASSERT_TRUE(encrypt(*kms, "mine", "uid-mine", mine).ok());
  v2::DecryptResponse opened;
  EXPECT_EQ(decrypt(*nobody, mine.ciphertext(), mine.key_id(), "uid-nobody-decrypt", opened).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_TRUE(opened.plaintext().empty());

  std::vector<json::object> records;
  const auto* refused = audit_record(d, "wrap", "uid-nobody", records);
  ASSERT_NE(refused, nullptr);
  EXPECT_EQ(refused->at("result").as_string(), "permission_denied");
  EXPECT_EQ(refused->at("client").at("uid").as_int64(), 65534);
}
