#include <gtest/gtest.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/kdf.h>

#include "common/hex.h"
#include "daemon/core/crypto/hkdf.h"
#include "tests/support/openssl_oracle.h"
#include "tests/support/vectors.h"

using namespace custody;
using namespace custody::core;

namespace {

HmacFunction software_hmac(const Bytes& prk) {
  return [prk](std::span<const std::uint8_t> m) -> Outcome<SecureBytes> {
    SecureBytes out(32);
    unsigned int len = 32;
    HMAC(EVP_sha256(), prk.data(), static_cast<int>(prk.size()), m.data(), m.size(), out.data(), &len);
    return out;
  };
}

}  // namespace

TEST(HkdfExpand, MatchesRfc5869Vectors) {
  auto vectors = test::rfc5869_sha256_vectors();
  ASSERT_EQ(vectors.size(), 3u);
  for (const auto& v : vectors) {
    auto okm = hkdf_expand(software_hmac(v.prk), v.info, v.okm.size());
    ASSERT_TRUE(okm);
    EXPECT_EQ(hex_lower(*okm), hex_lower(v.okm));
  }
}

TEST(HkdfExpand, MatchesOpenSslForManyLengthsAndInfos) {
  Bytes prk(32);
  for (int i = 0; i < 32; ++i) prk[i] = static_cast<std::uint8_t>(i * 7 + 1);
  for (std::size_t length : {1u, 31u, 32u, 33u, 64u, 100u, 1024u}) {
    for (std::size_t info_len : {0u, 1u, 77u, 1024u}) {
      Bytes info(info_len, static_cast<std::uint8_t>(info_len));
      auto okm = hkdf_expand(software_hmac(prk), info, length);
      ASSERT_TRUE(okm);
      EXPECT_EQ(hex_lower(*okm), hex_lower(test::openssl_hkdf_expand(prk, info, length))) << length << "/" << info_len;
    }
  }
}

TEST(HkdfExpand, RefusesLengthsOutsideTheRfcBound) {
  Bytes prk(32, 1);
  EXPECT_FALSE(hkdf_expand(software_hmac(prk), {}, 0));
  EXPECT_FALSE(hkdf_expand(software_hmac(prk), {}, 255 * 32 + 1));
  EXPECT_TRUE(hkdf_expand(software_hmac(prk), {}, 255 * 32));
}
