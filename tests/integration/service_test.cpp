// The dispatcher between transport and handlers (service::Service), on a real token and a real
// audit log: it routes, fails closed when the audit log cannot be written (nothing runs), turns a
// handler's exception into an audited 500 and serves on, and answers only after the records are
// written.
#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <future>

#include "daemon/core/audit/audit_log.h"
#include "daemon/core/keys/data_plane.h"
#include "daemon/core/keys/key_admin.h"
#include "daemon/core/keys/token_key_vault.h"
#include "daemon/service/call.h"
#include "daemon/service/service.h"
#include "tests/support/softhsm_token.h"

using namespace custody;
using namespace custody::service;

namespace {

class ServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    store_ = core::StateStore::open(dir_.path() + "/state.db").value();
    audit_ = core::AuditLog::open(dir_.path() + "/audit.jsonl", core::AuditDurability::group, clock_).value();
    key_admin_ = std::make_unique<core::KeyAdmin>(registry_, *store_, vault_, clock_);
    context_ = std::make_unique<ServiceContext>(
        ServiceContext{registry_, vault_, data_plane_, *key_admin_, *audit_, metrics_, {}, 16, nullptr, nullptr, nullptr, health_});
    Router router;
    router.add("GET", "/v1/things/{name}", [this](Call& call) {
      ++runs_;
      auto& e = call.record("thing.read");
      e.key = call.params.at(0);
      return json_response(200, boost::json::object{{"name", call.params.at(0)}});
    });
    router.add("POST", "/v1/explode", [this](Call& call) -> Response {
      ++runs_;
      call.record("explode.started");
      throw std::runtime_error("a bug");
    });
    router.add("GET", "/v1/quiet", [this](Call&) {
      ++runs_;
      return json_response(200, boost::json::object{{"ok", true}});
    }, /*audited=*/false);
    service_ = std::make_unique<Service>(std::move(router), *context_);
  }

  // Handles one request and waits for its answer (which may come from the audit writer).
  Response handle(const std::string& method, const std::string& target) {
    Request r;
    r.method = method;
    r.target = target;
    r.peer = core::Peer{1000, 1000, 42};
    r.request_id = "req-" + std::to_string(++requests_);
    std::promise<Response> answer;
    service_->handle(r, [&](Response response) { answer.set_value(std::move(response)); });
    return answer.get_future().get();
  }
  std::vector<boost::json::object> records() {
    audit_->stop();
    std::vector<boost::json::object> out;
    std::istringstream in(test::read_file(dir_.path() + "/audit.jsonl"));
    for (std::string line; std::getline(in, line);) out.push_back(boost::json::parse(line).as_object());
    return out;
  }

  test::TempDir dir_;
  core::SystemClock clock_;
  p11::SessionPool& pool_ = test::SharedToken::get().pool();
  core::KeyRegistry registry_;
  core::TokenKeyVault vault_{pool_};
  core::DataPlane data_plane_{registry_, vault_};
  std::unique_ptr<core::StateStore> store_;
  std::unique_ptr<core::AuditLog> audit_;
  std::unique_ptr<core::KeyAdmin> key_admin_;
  Metrics metrics_;
  HealthState health_;
  std::unique_ptr<ServiceContext> context_;
  std::unique_ptr<Service> service_;
  int runs_ = 0;
  int requests_ = 0;
};

std::string code_of(const Response& r) {
  return std::string(boost::json::parse(std::string_view(r.body.data(), r.body.size())).at("error").at("code").as_string());
}

}  // namespace

TEST_F(ServiceTest, RoutesToTheHandlerWithItsParametersAndAuditsBeforeAnswering) {
  auto r = handle("GET", "/v1/things/lamp");
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(runs_, 1);
  EXPECT_EQ(boost::json::parse(std::string_view(r.body.data(), r.body.size())).at("name"), "lamp");
  // The answer came after its record was written.
  EXPECT_EQ(audit_->sequence(), 1u);
  auto recs = records();
  ASSERT_EQ(recs.size(), 1u);
  EXPECT_EQ(recs[0].at("type"), "thing.read");
  EXPECT_EQ(recs[0].at("key"), "lamp");
  EXPECT_EQ(recs[0].at("request_id"), "req-1");
  EXPECT_EQ(recs[0].at("client").at("pid"), 42);
}

TEST_F(ServiceTest, UnknownPathsAndMethodsAreRefusedAndAudited) {
  auto missing = handle("GET", "/v1/nothing/here");
  EXPECT_EQ(missing.status, 404);
  EXPECT_EQ(code_of(missing), "not_found");
  auto wrong = handle("DELETE", "/v1/things/lamp");
  EXPECT_EQ(wrong.status, 405);
  EXPECT_EQ(code_of(wrong), "method_not_allowed");
  EXPECT_EQ(runs_, 0);
  auto recs = records();
  ASSERT_EQ(recs.size(), 2u);
  EXPECT_EQ(recs[0].at("type"), "request");
  EXPECT_EQ(recs[0].at("path"), "/v1/nothing/here");
  EXPECT_EQ(recs[1].at("result"), "method_not_allowed");
}

TEST_F(ServiceTest, AHandlerThatThrowsCostsOnlyItsRequestAnAudited500) {
  auto r = handle("POST", "/v1/explode");
  EXPECT_EQ(r.status, 500);
  EXPECT_EQ(code_of(r), "internal");
  EXPECT_EQ(std::string_view(r.body.data(), r.body.size()).find("a bug"), std::string_view::npos)
      << "the exception's text must not reach the client";
  // And the next request is served as usual.
  EXPECT_EQ(handle("GET", "/v1/things/after").status, 200);
  auto recs = records();
  ASSERT_EQ(recs.size(), 3u);
  EXPECT_EQ(recs[0].at("type"), "explode.started") << "what happened before the exception stays on record";
  EXPECT_EQ(recs[1].at("type"), "request");
  EXPECT_EQ(recs[1].at("result"), "internal");
  EXPECT_EQ(recs[2].at("type"), "thing.read");
}

TEST_F(ServiceTest, NothingAuditedRunsWhileTheLogCannotBeWritten) {
  audit_->stop();  // no longer accepting records
  auto r = handle("GET", "/v1/things/lamp");
  EXPECT_EQ(r.status, 503);
  EXPECT_EQ(code_of(r), "unavailable");
  EXPECT_EQ(runs_, 0) << "an audited handler ran although its record could not be written";
  // A route that writes no record is still served.
  EXPECT_EQ(handle("GET", "/v1/quiet").status, 200);
  EXPECT_EQ(runs_, 1);
}

TEST_F(ServiceTest, ARefusalFromTheTransportIsAnsweredAndAudited) {
  Request r;
  r.method = "POST";
  r.target = "/v1/things/big";
  r.request_id = "refused-1";
  std::promise<Response> answer;
  service_->refuse(r, {core::Code::payload_too_large, "the body is too large"},
                   [&](Response response) { answer.set_value(std::move(response)); });
  auto response = answer.get_future().get();
  EXPECT_EQ(response.status, 413);
  EXPECT_EQ(runs_, 0);
  auto recs = records();
  ASSERT_EQ(recs.size(), 1u);
  EXPECT_EQ(recs[0].at("result"), "payload_too_large");
  EXPECT_EQ(recs[0].at("request_id"), "refused-1");
}
