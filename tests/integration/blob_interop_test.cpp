// Blobs made by the daemon's data plane decrypt with OpenSSL given the key bytes, exactly as
// CONTRACT §4 describes; and a blob OpenSSL builds from that description unwraps in custody.
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <boost/json.hpp>

#include "common/hex.h"
#include "daemon/core/crypto/blob_codec.h"
#include "daemon/core/keys/data_plane.h"
#include "daemon/core/keys/token_key_vault.h"
#include "tests/integration/test_keys.h"
#include "tests/support/openssl_oracle.h"

using namespace custody;
using namespace custody::core;

namespace {

class BlobInterop : public ::testing::Test {
 protected:
  void SetUp() override {
    key_bytes_.resize(32);
    RAND_bytes(key_bytes_.data(), 32);
    Key key;
    key.name = "interop";
    key.algorithm = Algorithm::aes_256_gcm;
    key.current_version = 2;
    for (std::uint32_t v = 1; v <= 2; ++v) {
      KeyVersion kv;
      kv.version = v;
      // Version 1 has other bytes: a blob must be decrypted with the version it names.
      Bytes bytes = key_bytes_;
      if (v == 1) bytes[0] ^= 0xff;
      kv.object = test::make_known_key(Algorithm::aes_256_gcm, bytes, "custody:interop:v" + std::to_string(v));
      key.versions.push_back(kv);
    }
    key.policy = *parse_policy(boost::json::parse(R"([{"uid":1000,"operations":["wrap","unwrap","rewrap"]}])"));
    registry_.put(key);
  }

  Bytes key_bytes_;
  KeyRegistry registry_;
  TokenKeyVault vault_{test::SharedToken::get().pool()};
  DataPlane plane_{registry_, vault_};
  Peer peer_{1000, 1000, 1};
  EncryptionContext ctx_{{"tenant", "acme"}, {"table", "users"}};
};

}  // namespace

TEST_F(BlobInterop, DaemonBlobDecryptsWithOpenSsl) {
  for (std::size_t n : {1u, 16u, 32u, 1000u, 8192u}) {
    Bytes pt(n);
    RAND_bytes(pt.data(), static_cast<int>(n));
    AuditFacts facts;
    auto sealed = plane_.wrap(peer_, "interop", pt, ctx_, facts);
    ASSERT_TRUE(sealed) << sealed.error().message;
    EXPECT_EQ(sealed->version, 2u);
    EXPECT_EQ(facts.context_sha256, sha256_hex(encode_context(ctx_)).value());
    auto blob = parse_blob(sealed->ciphertext);
    ASSERT_TRUE(blob);
    EXPECT_EQ(blob->key_name, "interop");
    auto plain = test::openssl_gcm_decrypt(key_bytes_, blob->iv, blob_aad(blob->header, encode_context(ctx_)), blob->ciphertext_and_tag);
    ASSERT_TRUE(plain) << "OpenSSL refused a custody blob of " << n << " bytes";
    EXPECT_EQ(*plain, pt);
  }
}

TEST_F(BlobInterop, OpenSslBlobUnwrapsInCustody) {
  Bytes iv(12);
  RAND_bytes(iv.data(), 12);
  Bytes pt = to_bytes("made by OpenSSL from the contract");
  Bytes blob = encode_blob_header("interop", 2, iv);
  Bytes ct = test::openssl_gcm_encrypt(key_bytes_, iv, blob_aad(blob, encode_context(ctx_)), pt);
  blob.insert(blob.end(), ct.begin(), ct.end());
  AuditFacts facts;
  auto opened = plane_.unwrap(peer_, "interop", blob, ctx_, facts);
  ASSERT_TRUE(opened) << opened.error().message;
  EXPECT_EQ(Bytes(opened->plaintext.begin(), opened->plaintext.end()), pt);
}

TEST_F(BlobInterop, EveryFlippedByteIsRefused) {
  Bytes pt = to_bytes("sixteen byte dek");
  AuditFacts facts;
  auto sealed = plane_.wrap(peer_, "interop", pt, ctx_, facts);
  ASSERT_TRUE(sealed);
  for (std::size_t i = 0; i < sealed->ciphertext.size(); ++i) {
    for (std::uint8_t bit : {0x01, 0x80}) {
      Bytes tampered = sealed->ciphertext;
      tampered[i] ^= bit;
      auto r = plane_.unwrap(peer_, "interop", tampered, ctx_, facts);
      ASSERT_FALSE(r) << "byte " << i;
      EXPECT_TRUE(r.error().code == Code::invalid_ciphertext || r.error().code == Code::not_found) << i;
    }
  }
}

TEST_F(BlobInterop, ContextKeyNameAndVersionMustMatch) {
  Bytes pt = to_bytes("data key");
  AuditFacts facts;
  auto sealed = plane_.wrap(peer_, "interop", pt, ctx_, facts);
  ASSERT_TRUE(sealed);
  auto other_ctx = ctx_;
  other_ctx["tenant"] = "other";
  auto r = plane_.unwrap(peer_, "interop", sealed->ciphertext, other_ctx, facts);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Code::invalid_ciphertext);
  EXPECT_FALSE(plane_.unwrap(peer_, "interop", sealed->ciphertext, {}, facts));

  // The same bytes presented under another key name are refused before any decryption.
  Key other = *registry_.find("interop");
  other.name = "interop2";
  registry_.put(other);
  r = plane_.unwrap(peer_, "interop2", sealed->ciphertext, ctx_, facts);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Code::invalid_ciphertext);

  // A version the key does not have is not found; rewriting the version in the header of a
  // real blob changes the AAD, so it does not authenticate under the other version either.
  Bytes v9 = sealed->ciphertext;
  v9[5 + 7 + 3] = 9;
  r = plane_.unwrap(peer_, "interop", v9, ctx_, facts);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Code::not_found);
  Bytes v1 = sealed->ciphertext;
  v1[5 + 7 + 3] = 1;
  r = plane_.unwrap(peer_, "interop", v1, ctx_, facts);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Code::invalid_ciphertext);
}

TEST_F(BlobInterop, RewrapMovesABlobToTheCurrentVersion) {
  Key k = *registry_.find("interop");
  k.current_version = 1;
  registry_.put(k);
  AuditFacts facts;
  auto old_blob = plane_.wrap(peer_, "interop", to_bytes("rotate me"), ctx_, facts);
  ASSERT_TRUE(old_blob);
  EXPECT_EQ(old_blob->version, 1u);
  k.current_version = 2;
  registry_.put(k);
  auto moved = plane_.rewrap(peer_, "interop", old_blob->ciphertext, ctx_, facts);
  ASSERT_TRUE(moved);
  EXPECT_EQ(moved->version, 2u);
  auto blob = parse_blob(moved->ciphertext);
  auto plain = test::openssl_gcm_decrypt(key_bytes_, blob->iv, blob_aad(blob->header, encode_context(ctx_)), blob->ciphertext_and_tag);
  ASSERT_TRUE(plain);
  EXPECT_EQ(*plain, to_bytes("rotate me"));
}

TEST_F(BlobInterop, PolicyStateAndAlgorithmAreEnforced) {
  AuditFacts facts;
  auto denied = plane_.wrap(Peer{1001, 1000, 1}, "interop", to_bytes("x"), ctx_, facts);
  ASSERT_FALSE(denied);
  EXPECT_EQ(denied.error().code, Code::permission_denied);
  auto datakey_denied = plane_.datakey(peer_, "interop", 32, ctx_, facts);
  ASSERT_FALSE(datakey_denied);
  EXPECT_EQ(datakey_denied.error().code, Code::permission_denied);
  // A missing key is refused like a forbidden one, in the same words; only the audit knows.
  AuditFacts missing_facts;
  auto missing = plane_.wrap(peer_, "nope", to_bytes("x"), ctx_, missing_facts);
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, Code::permission_denied);
  EXPECT_EQ(missing.error().message, "uid " + std::to_string(peer_.uid) + " may not wrap with key 'nope'");
  EXPECT_FALSE(missing_facts.key_exists);
  EXPECT_TRUE(facts.key_exists);
  Key k = *registry_.find("interop");
  k.state = KeyState::disabled;
  registry_.put(k);
  auto disabled = plane_.wrap(peer_, "interop", to_bytes("x"), ctx_, facts);
  ASSERT_FALSE(disabled);
  EXPECT_EQ(disabled.error().code, Code::failed_precondition);
}
