#include <gtest/gtest.h>

#include "daemon/service/json_body.h"
#include "daemon/service/request.h"

using namespace custody;
using namespace custody::service;

TEST(JsonBody, RefusesNonObjectsAndDeepNesting) {
  EXPECT_TRUE(parse_body(R"({"a":1})", 16));
  EXPECT_FALSE(parse_body("[1]", 16));
  EXPECT_FALSE(parse_body("{\"a\":", 16));
  EXPECT_FALSE(parse_body("", 16));
  std::string deep = "{\"a\":" + std::string(20, '[') + std::string(20, ']') + "}";
  auto r = parse_body(deep, 16);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, core::Code::invalid_argument);
  EXPECT_TRUE(parse_body(deep, 32));
}

TEST(JsonBody, FieldsAreTypedAndBounded) {
  auto body = parse_body(R"({"p":"aGVsbG8=","n":5,"b":true,"s":"x","bad":"!!"})", 16);
  ASSERT_TRUE(body);
  Fields f(*body);
  EXPECT_EQ(f.base64("p", 1, 5)->size(), 5u);
  EXPECT_FALSE(f.base64("p", 1, 4));
  EXPECT_FALSE(f.base64("bad", 0, 10));
  EXPECT_FALSE(f.base64("missing", 1, 10));
  EXPECT_TRUE(f.base64("missing", 0, 10, false));
  EXPECT_EQ(**f.number("n", 1, 10), 5u);
  EXPECT_FALSE(f.number("n", 6, 10));
  EXPECT_FALSE(f.number("s", 0, 10));
  EXPECT_TRUE(*f.boolean("b", false));
  EXPECT_FALSE(f.boolean("n", false));
  auto unknown = f.only({"p", "n"});
  ASSERT_FALSE(unknown);
  EXPECT_NE(unknown.error().message.find("'b'"), std::string::npos);
}

TEST(RequestId, EchoesAGoodClientIdAndReplacesABadOne) {
  EXPECT_EQ(choose_request_id("abc-123"), "abc-123");
  EXPECT_EQ(choose_request_id(std::string(64, 'x')), std::string(64, 'x'));
  for (std::string bad : {std::string(65, 'x'), std::string(""), std::string("has space"), std::string("tab\t")}) {
    auto id = choose_request_id(bad);
    EXPECT_NE(id, bad);
    EXPECT_EQ(id.size(), 32u);
  }
  EXPECT_NE(choose_request_id(""), choose_request_id(""));
}
