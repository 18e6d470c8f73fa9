// The service API over a real socket to a real daemon on a fresh SoftHSMv2 token.
#include <gtest/gtest.h>

#include "common/base64.h"
#include "tests/support/daemon_process.h"

using namespace custody;
using namespace custody::test;
namespace json = boost::json;

namespace {

class DataPlaneE2E : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    daemon_ = new Daemon();
    ASSERT_EQ(daemon_->create_key("demo", "aes-256-gcm", allow_me_everything()), 201);
    ASSERT_EQ(daemon_->create_key("demo-derive", "hmac-sha256", allow_me_everything()), 201);
  }
  static void TearDownTestSuite() {
    delete daemon_;
    daemon_ = nullptr;
  }
  static Daemon* daemon_;
};
Daemon* DataPlaneE2E::daemon_ = nullptr;


}  // namespace

TEST_F(DataPlaneE2E, WrapThenUnwrapRoundTrips) {
  auto [s1, wrapped] = daemon_->post("/v1/keys/demo/wrap", {{"plaintext", b64("hello")}, {"context", {{"k", "v"}}}});
  ASSERT_EQ(s1, 200) << json::serialize(wrapped);
  EXPECT_EQ(wrapped.at("key_version").as_int64(), 1);
  auto [s2, opened] = daemon_->post("/v1/keys/demo/unwrap", {{"ciphertext", wrapped.at("ciphertext")}, {"context", {{"k", "v"}}}});
  ASSERT_EQ(s2, 200);
  EXPECT_EQ(opened.at("plaintext").as_string(), b64("hello"));
  auto [s3, wrong] = daemon_->post("/v1/keys/demo/unwrap", {{"ciphertext", wrapped.at("ciphertext")}});
  EXPECT_EQ(s3, 400);
  EXPECT_EQ(wrong.at("error").at("code").as_string(), "invalid_ciphertext");
}

TEST_F(DataPlaneE2E, DatakeyReturnsAKeyThatUnwrapsToItsPlaintext) {
  auto [s, dk] = daemon_->post("/v1/keys/demo/datakey", {{"length", 48}});
  ASSERT_EQ(s, 200);
  EXPECT_EQ(base64_decode(std::string(dk.at("plaintext").as_string()))->size(), 48u);
  auto [s2, opened] = daemon_->post("/v1/keys/demo/unwrap", {{"ciphertext", dk.at("ciphertext")}});
  ASSERT_EQ(s2, 200);
  EXPECT_EQ(opened.at("plaintext"), dk.at("plaintext"));
  auto [s3, no_plain] = daemon_->post("/v1/keys/demo/datakey", {{"include_plaintext", false}});
  ASSERT_EQ(s3, 200);
  EXPECT_FALSE(no_plain.as_object().contains("plaintext"));
  EXPECT_TRUE(no_plain.as_object().contains("ciphertext"));
}

TEST_F(DataPlaneE2E, RotationKeepsOldBlobsReadableAndRewrapMovesThem) {
  ASSERT_EQ(daemon_->create_key("rotating", "aes-256-gcm", allow_me_everything()), 201);
  auto [s, old_blob] = daemon_->post("/v1/keys/rotating/wrap", {{"plaintext", b64("v1 data")}});
  ASSERT_EQ(s, 200);
  ASSERT_EQ(daemon_->admin_operation("rotate-key", {{"name", "rotating"}}).first, 201);
  auto [s2, moved] = daemon_->post("/v1/keys/rotating/rewrap", {{"ciphertext", old_blob.at("ciphertext")}});
  ASSERT_EQ(s2, 200);
  EXPECT_EQ(moved.at("key_version").as_int64(), 2);
  for (const auto& blob : {old_blob.at("ciphertext"), moved.at("ciphertext")}) {
    auto [s3, opened] = daemon_->post("/v1/keys/rotating/unwrap", {{"ciphertext", blob}});
    ASSERT_EQ(s3, 200);
    EXPECT_EQ(opened.at("plaintext").as_string(), b64("v1 data"));
  }
  auto [s4, fresh] = daemon_->post("/v1/keys/rotating/wrap", {{"plaintext", b64("x")}});
  EXPECT_EQ(fresh.at("key_version").as_int64(), 2);
}

TEST_F(DataPlaneE2E, DeriveIsDeterministicPerInfoAndVersion) {
  auto [s1, a] = daemon_->post("/v1/keys/demo-derive/derive", {{"info", b64("tenant-1")}, {"length", 32}});
  auto [s2, b] = daemon_->post("/v1/keys/demo-derive/derive", {{"info", b64("tenant-1")}, {"length", 32}});
  auto [s3, c] = daemon_->post("/v1/keys/demo-derive/derive", {{"info", b64("tenant-2")}, {"length", 32}});
  ASSERT_EQ(s1, 200);
  ASSERT_EQ(s2, 200);
  ASSERT_EQ(s3, 200);
  EXPECT_EQ(a.at("key"), b.at("key"));
  EXPECT_NE(a.at("key"), c.at("key"));
  auto [s4, wrong_alg] = daemon_->post("/v1/keys/demo/derive", {{"info", ""}, {"length", 32}});
  EXPECT_EQ(s4, 400);
  EXPECT_EQ(wrong_alg.at("error").at("code").as_string(), "invalid_argument");
}

TEST_F(DataPlaneE2E, BatchAnswersEachItemInOrder) {
  auto [s, wrapped] = daemon_->post("/v1/keys/demo/wrap", {{"batch", {{{"plaintext", b64("a")}}, {{"plaintext", "***"}},
                                                                      {{"plaintext", b64("c")}, {"context", {{"x", "y"}}}}}}});
  ASSERT_EQ(s, 200);
  const auto& items = wrapped.at("batch").as_array();
  ASSERT_EQ(items.size(), 3u);
  EXPECT_TRUE(items[0].as_object().contains("ciphertext"));
  EXPECT_EQ(items[1].at("error").at("code").as_string(), "invalid_argument");
  EXPECT_TRUE(items[2].as_object().contains("ciphertext"));
  auto [s2, opened] = daemon_->post("/v1/keys/demo/unwrap", {{"batch", {{{"ciphertext", items[0].at("ciphertext")}},
                                                                       {{"ciphertext", items[2].at("ciphertext")}, {"context", {{"x", "y"}}}}}}});
  ASSERT_EQ(s2, 200);
  EXPECT_EQ(opened.at("batch").at(0).at("plaintext").as_string(), b64("a"));
  EXPECT_EQ(opened.at("batch").at(1).at("plaintext").as_string(), b64("c"));
  json::array too_many;
  for (int i = 0; i < 257; ++i) too_many.push_back(json::object{{"plaintext", b64("x")}});
  auto [s3, refused] = daemon_->post("/v1/keys/demo/wrap", {{"batch", too_many}});
  EXPECT_EQ(s3, 400);
}

TEST_F(DataPlaneE2E, KeysListingAndMetadata) {
  auto r = daemon_->service().call("GET", "/v1/keys/demo");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200);
  auto k = json::parse(r->body);
  EXPECT_EQ(k.at("name").as_string(), "demo");
  EXPECT_EQ(k.at("algorithm").as_string(), "aes-256-gcm");
  EXPECT_EQ(k.at("state").as_string(), "enabled");
  EXPECT_TRUE(k.at("versions").at(0).at("kcv").is_null());
  auto d = json::parse(daemon_->service().call("GET", "/v1/keys/demo-derive")->body);
  EXPECT_EQ(d.at("versions").at(0).at("kcv").as_string().size(), 6u);
  auto list = json::parse(daemon_->service().call("GET", "/v1/keys")->body);
  EXPECT_GE(list.at("keys").as_array().size(), 2u);
  auto health = daemon_->service().call("GET", "/v1/health");
  EXPECT_EQ(health->status, 200);
  EXPECT_EQ(json::parse(health->body).at("status").as_string(), "ok");
  // Any peer may ask the service socket: it is not told how many keys exist; operators are.
  EXPECT_FALSE(json::parse(health->body).as_object().contains("keys")) << health->body;
  auto admin_health = json::parse(daemon_->admin().call("GET", "/v1/health")->body);
  EXPECT_GE(admin_health.at("keys").as_int64(), 2);
}

TEST_F(DataPlaneE2E, RequestIdsAreEchoedOrGenerated) {
  auto r = daemon_->service().call("GET", "/v1/keys", "", {{"X-Request-Id", "trace-42"}});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->request_id, "trace-42");
  auto g = daemon_->service().call("GET", "/v1/keys", "", {{"X-Request-Id", std::string(65, 'x')}});
  EXPECT_EQ(g->request_id.size(), 32u);
}

TEST(DaemonRestart, KeysAndBlobsSurviveARestart) {
  Daemon d;
  ASSERT_EQ(d.create_key("durable", "aes-256-gcm", allow_me_everything()), 201);
  auto [s, wrapped] = d.post("/v1/keys/durable/wrap", {{"plaintext", b64("keep me")}});
  ASSERT_EQ(s, 200);
  ASSERT_EQ(d.terminate(), 0);
  d.start();
  auto [s2, opened] = d.post("/v1/keys/durable/unwrap", {{"ciphertext", wrapped.at("ciphertext")}});
  ASSERT_EQ(s2, 200);
  EXPECT_EQ(opened.at("plaintext").as_string(), b64("keep me"));
}
