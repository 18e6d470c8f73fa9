// derive = HKDF-Expand(SHA-256, PRK = the key version, info, length), computed with the token's
// CKM_SHA256_HMAC, checked against RFC 5869's vectors and OpenSSL's HKDF.
#include <gtest/gtest.h>
#include <openssl/core_names.h>
#include <openssl/kdf.h>
#include <openssl/rand.h>

#include <boost/json.hpp>

#include "common/hex.h"
#include "daemon/core/keys/data_plane.h"
#include "daemon/core/keys/token_key_vault.h"
#include "tests/integration/test_keys.h"
#include "tests/support/openssl_oracle.h"
#include "tests/support/vectors.h"

using namespace custody;
using namespace custody::core;

namespace {

Key hmac_key(const std::string& name, const Bytes& prk) {
  Key key;
  key.name = name;
  key.algorithm = Algorithm::hmac_sha256;
  key.current_version = 1;
  KeyVersion v;
  v.version = 1;
  v.object = test::make_known_key(Algorithm::hmac_sha256, prk, "custody:" + name + ":v1");
  key.versions.push_back(v);
  key.policy = *parse_policy(boost::json::parse(R"([{"uid":1000,"operations":["derive"]}])"));
  return key;
}

}  // namespace

TEST(DeriveInterop, TokenHkdfExpandMatchesRfc5869) {
  KeyRegistry registry;
  TokenKeyVault vault(test::SharedToken::get().pool());
  DataPlane plane(registry, vault);
  int i = 0;
  for (const auto& v : test::rfc5869_sha256_vectors()) {
    const std::string name = "rfc5869-" + std::to_string(i++);
    registry.put(hmac_key(name, v.prk));
    AuditFacts facts;
    auto okm = plane.derive(Peer{1000, 1, 1}, name, v.info, v.okm.size(), std::nullopt, facts);
    ASSERT_TRUE(okm) << okm.error().message;
    EXPECT_EQ(hex_lower(okm->plaintext), hex_lower(v.okm)) << name;
  }
  EXPECT_EQ(i, 3);
}

TEST(DeriveInterop, TokenHkdfExpandMatchesOpenSsl) {
  KeyRegistry registry;
  TokenKeyVault vault(test::SharedToken::get().pool());
  DataPlane plane(registry, vault);
  Bytes prk(32);
  RAND_bytes(prk.data(), 32);
  registry.put(hmac_key("derive-openssl", prk));
  for (std::size_t length : {1u, 32u, 33u, 100u, 1024u}) {
    for (std::size_t info_len : {0u, 5u, 1024u}) {
      Bytes info(info_len);
      RAND_bytes(info.data(), static_cast<int>(info_len));
      AuditFacts facts;
      auto okm = plane.derive(Peer{1000, 1, 1}, "derive-openssl", info, length, 1u, facts);
      ASSERT_TRUE(okm) << okm.error().message;
      EXPECT_EQ(hex_lower(okm->plaintext), hex_lower(test::openssl_hkdf_expand(prk, info, length))) << length << "/" << info_len;
    }
  }
  AuditFacts facts;
  auto too_long = plane.derive(Peer{1000, 1, 1}, "derive-openssl", {}, 1025, std::nullopt, facts);
  ASSERT_FALSE(too_long);
  EXPECT_EQ(too_long.error().code, Code::invalid_argument);
  auto no_version = plane.derive(Peer{1000, 1, 1}, "derive-openssl", {}, 32, 2u, facts);
  ASSERT_FALSE(no_version);
  EXPECT_EQ(no_version.error().code, Code::not_found);
}
