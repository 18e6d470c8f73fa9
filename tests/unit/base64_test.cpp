#include <gtest/gtest.h>
#include <openssl/rand.h>

#include "common/base64.h"

using namespace custody;

TEST(Base64, RoundTripsEveryLengthAgainstKnownEncodings) {
  // RFC 4648 §10 test vectors.
  const std::pair<const char*, const char*> cases[] = {{"", ""},         {"f", "Zg=="},     {"fo", "Zm8="},
                                                       {"foo", "Zm9v"},  {"foob", "Zm9vYg=="}, {"fooba", "Zm9vYmE="},
                                                       {"foobar", "Zm9vYmFy"}};
  for (auto [plain, encoded] : cases) {
    EXPECT_EQ(base64_encode(to_bytes(plain)), encoded);
    auto back = base64_decode(encoded);
    ASSERT_TRUE(back) << encoded;
    EXPECT_EQ(std::string(back->begin(), back->end()), plain);
  }
}

TEST(Base64, RandomDataSurvivesARoundTrip) {
  for (std::size_t n = 0; n < 300; ++n) {
    Bytes data(n);
    RAND_bytes(data.data(), static_cast<int>(n));
    auto back = base64_decode(base64_encode(data));
    ASSERT_TRUE(back);
    EXPECT_TRUE(std::equal(data.begin(), data.end(), back->begin(), back->end())) << n;
  }
}

TEST(Base64, RefusesNonCanonicalOrMalformedInput) {
  for (const char* bad : {"Zg", "Zg=", "Z===", "Zh==", "Zm9=", "Zm 9v", "Zm9v\n", "Zm-_", "====", "Zg==Zg==", "*m9v"})
    EXPECT_FALSE(base64_decode(bad)) << bad;
}
