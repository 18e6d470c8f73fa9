#include <gtest/gtest.h>

#include <boost/json.hpp>

#include "common/hex.h"
#include "daemon/core/crypto/encryption_context.h"
#include "daemon/service/json_body.h"

using namespace custody;
using namespace custody::core;

TEST(EncryptionContext, EmptyContextEncodesAsTwoZeroBytes) {
  EXPECT_EQ(hex_lower(encode_context({})), "0000");
  auto parsed = parse_context(nullptr);
  ASSERT_TRUE(parsed);
  EXPECT_TRUE(parsed->empty());
}

TEST(EncryptionContext, PairsAreSortedByKeyBytesWithLengthPrefixes) {
  auto v = boost::json::parse(R"({"b":"2","a":"","\u00e9":"x","B":"y"})");
  auto ctx = parse_context(&v);
  ASSERT_TRUE(ctx);
  // 'B' (0x42) < 'a' (0x61) < 'b' (0x62) < 0xC3 0xA9 (é): unsigned byte order.
  EXPECT_EQ(hex_lower(encode_context(*ctx)),
            "0004"
            "000142" "000179"
            "000161" "0000"
            "000162" "000132"
            "0002c3a9" "000178");
}

TEST(EncryptionContext, RefusesWhatTheContractForbids) {
  auto check = [](const std::string& text) {
    auto v = boost::json::parse(text);
    return parse_context(&v).has_value();
  };
  EXPECT_FALSE(check(R"([])"));
  EXPECT_FALSE(check(R"({"a":1})"));
  EXPECT_FALSE(check(R"({"":"x"})"));
  EXPECT_FALSE(check("{\"" + std::string(129, 'k') + "\":\"v\"}"));
  EXPECT_TRUE(check("{\"" + std::string(128, 'k') + "\":\"" + std::string(1024, 'v') + "\"}"));
  EXPECT_FALSE(check("{\"k\":\"" + std::string(1025, 'v') + "\"}"));
  std::string many = "{";
  for (int i = 0; i < 33; ++i) many += (i ? "," : "") + std::string("\"k") + std::to_string(i) + "\":\"v\"";
  EXPECT_FALSE(check(many + "}"));
}

TEST(EncryptionContext, ARepeatedKeyIsRefusedBeforeItCouldCollapseIntoOne) {
  // A JSON object cannot hold a key twice, so the request parser must refuse the body: otherwise
  // {"k":"a","k":"b"} would silently become the context {"k":"b"}.
  auto body = service::parse_body(R"({"plaintext":"aGk=","context":{"k":"a","k":"b"}})", 16);
  ASSERT_FALSE(body);
  EXPECT_EQ(body.error().code, Code::invalid_argument);
  EXPECT_NE(body.error().message.find("duplicate field 'k' in 'context'"), std::string::npos) << body.error().message;
  auto fine = service::parse_body(R"({"context":{"k":"a","K":"b"}})", 16);
  ASSERT_TRUE(fine);
  auto ctx = parse_context(fine->if_contains("context"));
  ASSERT_TRUE(ctx);
  EXPECT_EQ(ctx->size(), 2u);
}
