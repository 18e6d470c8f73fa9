#include <gtest/gtest.h>

#include "daemon/service/router.h"

using namespace custody;
using namespace custody::service;

TEST(Router, MatchesPatternsAndExtractsParameters) {
  Router r;
  int hit = 0;
  r.add("POST", "/v1/keys/{name}/wrap", [&](Call&) { hit = 1; return Response{}; })
      .add("GET", "/v1/keys/{name}", [&](Call&) { hit = 2; return Response{}; })
      .add("GET", "/v1/keys", [&](Call&) { hit = 3; return Response{}; });
  auto m = r.match("POST", "/v1/keys/demo/wrap");
  ASSERT_TRUE(m.route);
  EXPECT_EQ(m.params, std::vector<std::string>{"demo"});
  EXPECT_TRUE(r.match("GET", "/v1/keys").route);
  EXPECT_EQ(r.match("GET", "/v1/keys/a").params, std::vector<std::string>{"a"});
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
