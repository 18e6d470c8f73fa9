#include <gtest/gtest.h>

#include "daemon/service/router.h"

using namespace custody;
using namespace custody::service;

namespace {

// Runs the handler a match found and returns which one it was (the number the handler set).
int run(const Router::Match& m) {
  if (!m.route) return 0;
  Request request;
  Call call{request, m.params, {}};
  m.route->handler(call);
  return call.audit.empty() ? -1 : std::stoi(call.audit.front().type);
}

Handler marks(int n) {
  return [n](Call& c) {
    c.record(std::to_string(n));
    return Response{};
  };
}

}  // namespace

TEST(Router, DispatchesEachPatternToItsOwnHandlerAndExtractsParameters) {
  Router r;
  r.add("POST", "/v1/keys/{name}/wrap", marks(1))
      .add("GET", "/v1/keys/{name}", marks(2))
      .add("GET", "/v1/keys", marks(3))
      .add("POST", "/v1/keys/{name}/unwrap", marks(4))
      .add("POST", "/v1/keys/{name}", marks(5))
      .add("GET", "/v1/admin/requests/{id}/approvals/{who}", marks(6));
  auto m = r.match("POST", "/v1/keys/demo/wrap");
  ASSERT_TRUE(m.route);
  EXPECT_EQ(m.params, std::vector<std::string>{"demo"});
  EXPECT_EQ(run(m), 1);
  EXPECT_EQ(run(r.match("GET", "/v1/keys/a")), 2);
  EXPECT_EQ(r.match("GET", "/v1/keys/a").params, std::vector<std::string>{"a"});
  EXPECT_EQ(run(r.match("GET", "/v1/keys")), 3);
  EXPECT_TRUE(r.match("GET", "/v1/keys").params.empty());
  EXPECT_EQ(run(r.match("POST", "/v1/keys/demo/unwrap")), 4);
  // Same path, another method: another handler.
  EXPECT_EQ(run(r.match("POST", "/v1/keys/a")), 5);
  auto two = r.match("GET", "/v1/admin/requests/r1/approvals/alice");
  EXPECT_EQ(run(two), 6);
  EXPECT_EQ(two.params, (std::vector<std::string>{"r1", "alice"}));
}

TEST(Router, TellsUnknownPathsFromWrongMethods) {
  Router r;
  r.add("POST", "/v1/keys/{name}/wrap", [](Call&) { return Response{}; });
  auto wrong_method = r.match("GET", "/v1/keys/demo/wrap");
  EXPECT_FALSE(wrong_method.route);
  EXPECT_EQ(wrong_method.error, core::Code::method_not_allowed);
  for (const char* path : {"/v1/keys//wrap", "/v1/keys/demo/wrap/x", "/v2/keys/demo/wrap", "", "v1/keys/demo/wrap"}) {
    auto m = r.match("POST", path);
    EXPECT_FALSE(m.route) << path;
    EXPECT_EQ(m.error, core::Code::not_found) << path;
  }
}
