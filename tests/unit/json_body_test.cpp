#include <gtest/gtest.h>
#include <openssl/rand.h>

#include <cctype>

#include "daemon/service/call.h"
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

namespace {

// The error message of a refused body, or "" when it parsed.
std::string refusal(const std::string& text) {
  auto r = parse_body(text, 16);
  if (r) return "";
  EXPECT_EQ(r.error().code, core::Code::invalid_argument);
  return r.error().message;
}

}  // namespace

TEST(JsonBody, RefusesADuplicateMemberAtTheTop) {
  EXPECT_EQ(refusal(R"({"plaintext":"aGk=","plaintext":"Ynll"})"), "duplicate field 'plaintext'");
  EXPECT_EQ(refusal(R"({"a":1,"b":2,"a":1})"), "duplicate field 'a'");
  // The same name spelt with an escape is the same name.
  EXPECT_EQ(refusal(R"({"a":1,"\u0061":2})"), "duplicate field 'a'");
}

TEST(JsonBody, RefusesADuplicateMemberInANestedObject) {
  EXPECT_EQ(refusal(R"({"plaintext":"aGk=","context":{"tenant":"a","tenant":"b"}})"),
            "duplicate field 'tenant' in 'context'");
  EXPECT_EQ(refusal(R"({"x":{"y":{"z":1,"z":2}}})"), "duplicate field 'z' in 'y'");
  EXPECT_EQ(refusal(R"({"batch":[{"plaintext":"aGk="},{"plaintext":"aGk=","plaintext":"aGk="}]})"),
            "duplicate field 'plaintext' in 'batch'");
  EXPECT_EQ(refusal(R"({"params":{"policy":[{"uid":1,"operations":[],"uid":2}]}})"), "duplicate field 'uid' in 'policy'");
}

TEST(JsonBody, TheSameNameAtDifferentLevelsOrInSiblingObjectsIsFine) {
  auto body = parse_body(R"({"a":{"a":{"a":1}},"b":[{"a":1},{"a":2,"b":3}],"c":{"a":"x"},"d":[]})", 16);
  ASSERT_TRUE(body) << body.error().message;
  EXPECT_EQ(body->at("a").at("a").at("a").as_int64(), 1);
  EXPECT_EQ(body->at("b").at(1).at("b").as_int64(), 3);
  EXPECT_EQ(body->at("c").at("a").as_string(), "x");
  EXPECT_EQ(body->size(), 4u);
  // Names that share a prefix are different names.
  EXPECT_TRUE(parse_body(R"({"k":1,"kk":2,"k2":3,"":4})", 16));
}

TEST(JsonBody, RefusesADuplicateAmongManyMembers) {
  std::string many = "{";
  for (int i = 0; i < 500; ++i) many += (i ? "," : "") + std::string("\"k") + std::to_string(i) + "\":" + std::to_string(i);
  EXPECT_EQ(refusal(many + "}"), "");
  EXPECT_EQ(refusal(many + ",\"k250\":0}"), "duplicate field 'k250'");
  EXPECT_EQ(refusal(R"({"c":)" + many + R"(,"k7":1}})"), "duplicate field 'k7' in 'c'");
}

TEST(JsonBody, ALongDuplicateNameIsFoundAndShownShortened) {
  // Escapes make the parser hand the name over in parts.
  std::string name;
  for (int i = 0; i < 3000; ++i) name += "\\u0041b";
  const std::string message = refusal("{\"" + name + "\":1,\"" + name + "\":2}");
  EXPECT_EQ(message.rfind("duplicate field 'AbAb", 0), 0u) << message;
  EXPECT_LT(message.size(), 100u);
  EXPECT_EQ(refusal("{\"" + name + "\":1,\"" + name + "c\":2}"), "");
}

TEST(JsonBody, TrailingDataIsRefused) {
  EXPECT_NE(refusal(R"({"a":1} {"a":1})"), "");
  EXPECT_EQ(refusal(" {\"a\":1} \n"), "");
}

TEST(RequestId, EchoesAGoodClientIdAndReplacesABadOne) {
  EXPECT_EQ(choose_request_id("abc-123"), "abc-123");
  EXPECT_EQ(choose_request_id(std::string(64, 'x')), std::string(64, 'x'));
  for (std::string bad :
       {std::string(65, 'x'), std::string(""), std::string("has space"), std::string("tab\t"), std::string("-")}) {
    auto id = choose_request_id(bad);
    EXPECT_NE(id, bad);
    EXPECT_EQ(id.size(), 32u);
  }
  EXPECT_NE(choose_request_id(""), choose_request_id(""));
}

TEST(RequestId, AFailingRandomGeneratorGivesUniqueIdsNotUninitialisedBytes) {
  // OpenSSL 3 still honours a legacy RAND_METHOD: the simplest way to make RAND_bytes fail.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
  static RAND_METHOD failing{};
  failing.bytes = [](unsigned char*, int) { return 0; };
  failing.status = [] { return 0; };
  const RAND_METHOD* saved = RAND_get_rand_method();
  ASSERT_EQ(RAND_set_rand_method(&failing), 1);
  unsigned char probe[1];
  const bool rand_failed = RAND_bytes(probe, 1) != 1;
  const std::string a = choose_request_id(""), b = choose_request_id("-");
  RAND_set_rand_method(saved);
#pragma GCC diagnostic pop
  ASSERT_TRUE(rand_failed) << "the failing generator was not installed";
  EXPECT_NE(a, b);
  for (const auto& id : {a, b}) {
    EXPECT_EQ(id.front(), 't') << id;  // made from clock and counter, not from the stack
    EXPECT_LE(id.size(), 64u);
    for (char c : id) EXPECT_TRUE(std::isxdigit(static_cast<unsigned char>(c)) || c == 't' || c == '-') << id;
  }
  EXPECT_EQ(choose_request_id("").size(), 32u) << "random ids again once the generator works";
}

TEST(JsonResponse, SerializesLikeBoostJsonAcrossBufferGrowth) {
  for (std::size_t n : {0, 900, 1009, 1010, 1011, 5000, 70000}) {
    boost::json::object v(zeroizing_storage());
    v["key"] = secret_base64(Bytes(n, 0xa5));
    v["n"] = n;
    v["escaped"] = "quote \" and newline \n";
    const Response r = json_response(201, v);
    EXPECT_EQ(r.status, 201);
    EXPECT_EQ(r.body.view(), boost::json::serialize(v)) << n;
  }
}

TEST(WipingString, TakesAndHandsOverTheTransportBufferWithoutACopy) {
  std::string read(4096, 'p');
  const char* buffer = read.data();
  Request request;
  request.body = std::move(read);
  EXPECT_EQ(request.body.data(), buffer);
  EXPECT_EQ(request.body.size(), 4096u);
  Response response{200, std::move(request.body)};
  EXPECT_EQ(response.body.data(), buffer);
  const std::string out = std::move(response.body).release();
  EXPECT_EQ(out.data(), buffer);
  EXPECT_TRUE(response.body.empty());
  WipingString copy = out;
  wipe(copy);
  EXPECT_TRUE(copy.empty());
  EXPECT_EQ(out, std::string(4096, 'p'));
}
