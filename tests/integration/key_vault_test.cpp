#include <gtest/gtest.h>
#include <openssl/rand.h>

#include "common/hex.h"
#include "daemon/core/attestation/attestation_key.h"
#include "daemon/core/keys/token_key_vault.h"
#include "tests/integration/test_keys.h"
#include "tests/support/vectors.h"

using namespace custody;
using namespace custody::core;

namespace {

ObjectRef fresh_ref(const std::string& label) {
  ObjectRef ref;
  ref.id.resize(16);
  RAND_bytes(ref.id.data(), 16);
  ref.label = label;
  return ref;
}

CK_OBJECT_HANDLE find_object(p11::Session& s, CK_OBJECT_CLASS cls, const Bytes& id) {
  p11::AttributeTemplate t;
  t.add_ulong(CKA_CLASS, cls).add_bytes(CKA_ID, id);
  auto found = s.find_objects(t, 2);
  EXPECT_TRUE(found && found->size() == 1);
  return found && found->size() == 1 ? (*found)[0] : CK_INVALID_HANDLE;
}

// C_CopyObject: a second token object holding the same key, under another label. PKCS#11 2.40
// answers CKR_ACTION_PROHIBITED for an object with CKA_COPYABLE false (an empty template is
// CKR_ARGUMENTS_BAD on SoftHSMv2, and a non-modifiable key refuses a new label with
// CKR_ATTRIBUTE_READ_ONLY: neither proves the key uncopyable). A copy that was made is destroyed.
CK_RV try_to_copy(p11::Session& s, CK_OBJECT_HANDLE h) {
  p11::AttributeTemplate relabel;
  relabel.add_string(CKA_LABEL, "custody:copy-attempt");
  auto copy = s.copy_object(h, relabel);
  if (!copy) return copy.error().rv;
  EXPECT_TRUE(s.destroy_object(*copy));
  return CKR_OK;
}

std::optional<bool> copyable(p11::Session& s, CK_OBJECT_HANDLE h) {
  const CK_ATTRIBUTE_TYPE types[] = {CKA_COPYABLE};
  auto values = s.get_bools(h, types);
  EXPECT_TRUE(values);
  return values ? (*values)[CKA_COPYABLE] : std::nullopt;
}

}  // namespace

TEST(TokenKeyVault, GeneratedKeysAreUncopyableAndTheTokenRefusesACopy) {
  TokenKeyVault vault(test::SharedToken::get().pool());
  for (auto algorithm : {Algorithm::aes_256_gcm, Algorithm::hmac_sha256}) {
    SCOPED_TRACE(algorithm_name(algorithm));
    auto ref = fresh_ref(std::string("custody:nocopy-") + algorithm_name(algorithm) + ":v1");
    ASSERT_TRUE(vault.generate(algorithm, ref));
    auto a = vault.attributes(ref);
    ASSERT_TRUE(a);
    EXPECT_EQ((*a)["copyable"], std::optional<bool>(false));
    auto lease = test::SharedToken::get().pool().acquire();
    ASSERT_TRUE(lease);
    const auto h = find_object(lease->session(), CKO_SECRET_KEY, ref.id);
    EXPECT_EQ(try_to_copy(lease->session(), h), CKR_ACTION_PROHIBITED);
  }
}

TEST(TokenKeyVault, VerifyRefusesACopyableKey) {
  auto ref = fresh_ref("custody:copyable:v1");
  {
    auto lease = test::SharedToken::get().pool().acquire();
    ASSERT_TRUE(lease);
    p11::AttributeTemplate t;
    fill_key_template(t, Algorithm::aes_256_gcm, ref, true, false);
    t.add_ulong(CKA_VALUE_LEN, 32);
    ASSERT_TRUE(lease->session().generate_key(CKM_AES_KEY_GEN, t));
  }
  TokenKeyVault vault(test::SharedToken::get().pool());
  auto v = vault.verify(Algorithm::aes_256_gcm, ref, true);
  ASSERT_FALSE(v);
  EXPECT_NE(v.error().message.find("copyable=true"), std::string::npos) << v.error().message;
}

TEST(AttestationKey, BothHalvesAreUncopyableAndTheTokenRefusesACopy) {
  auto& pool = test::SharedToken::get().pool();
  bool created = false;
  auto key = AttestationKey::open(pool, created);
  ASSERT_TRUE(key) << key.error();
  {
    auto lease = pool.acquire();
    ASSERT_TRUE(lease);
    auto& s = lease->session();
    for (CK_OBJECT_CLASS cls : {CKO_PRIVATE_KEY, CKO_PUBLIC_KEY}) {
      SCOPED_TRACE(cls == CKO_PRIVATE_KEY ? "private" : "public");
      p11::AttributeTemplate t;
      t.add_ulong(CKA_CLASS, cls).add_string(CKA_LABEL, kAttestationKeyLabel);
      auto h = s.find_one(t, kAttestationKeyLabel);
      ASSERT_TRUE(h);
      EXPECT_EQ(copyable(s, *h), std::optional<bool>(false));
      EXPECT_EQ(try_to_copy(s, *h), CKR_ACTION_PROHIBITED);
    }
  }
  // Found again, with the same checks, on a later start.
  bool again = true;
  ASSERT_TRUE(AttestationKey::open(pool, again));
  EXPECT_FALSE(again);
}

TEST(TokenKeyVault, GeneratedKeysAreSensitiveNeverExtractableAndSingleRole) {
  TokenKeyVault vault(test::SharedToken::get().pool());
  for (auto algorithm : {Algorithm::aes_256_gcm, Algorithm::hmac_sha256}) {
    auto ref = fresh_ref(std::string("custody:attr-") + algorithm_name(algorithm) + ":v1");
    ASSERT_TRUE(vault.generate(algorithm, ref));
    auto a = vault.attributes(ref);
    ASSERT_TRUE(a);
    auto is = [&](const char* name, bool want) {
      ASSERT_TRUE((*a)[name].has_value()) << name;
      EXPECT_EQ(*(*a)[name], want) << algorithm_name(algorithm) << " " << name;
    };
    is("token", true);
    is("private", true);
    is("sensitive", true);
    is("always_sensitive", true);
    is("extractable", false);
    is("never_extractable", true);
    is("local", true);
    is("modifiable", false);
    is("wrap", false);
    is("unwrap", false);
    is("derive", false);
    const bool aes = algorithm == Algorithm::aes_256_gcm;
    is("encrypt", aes);
    is("decrypt", aes);
    is("sign", !aes);
    is("verify", !aes);
  }
}

TEST(TokenKeyVault, VerifyRefusesAKeyThatCombinesWrapWithEncrypt) {
  auto ref = fresh_ref("custody:dual-role:v1");
  {
    auto lease = test::SharedToken::get().pool().acquire();
    ASSERT_TRUE(lease);
    p11::AttributeTemplate t;
    t.add_ulong(CKA_CLASS, CKO_SECRET_KEY).add_ulong(CKA_KEY_TYPE, CKK_AES).add_ulong(CKA_VALUE_LEN, 32);
    t.add_bytes(CKA_ID, ref.id).add_string(CKA_LABEL, ref.label).add_bool(CKA_TOKEN, true).add_bool(CKA_PRIVATE, true);
    t.add_bool(CKA_SENSITIVE, true).add_bool(CKA_EXTRACTABLE, false).add_bool(CKA_ENCRYPT, true).add_bool(CKA_DECRYPT, true);
    t.add_bool(CKA_WRAP, true).add_bool(CKA_UNWRAP, true);
    ASSERT_TRUE(lease->session().generate_key(CKM_AES_KEY_GEN, t));
  }
  TokenKeyVault vault(test::SharedToken::get().pool());
  auto v = vault.verify(Algorithm::aes_256_gcm, ref, true);
  ASSERT_FALSE(v);
  EXPECT_NE(v.error().message.find("wrap=true"), std::string::npos) << v.error().message;
  EXPECT_NE(v.error().message.find("unwrap=true"), std::string::npos) << v.error().message;
}

TEST(TokenKeyVault, TokenAesGcmMatchesNistCavpVectors) {
  TokenKeyVault vault(test::SharedToken::get().pool());
  auto vectors = test::nist_gcm256_vectors();
  ASSERT_GT(vectors.size(), 100u);
  int checked = 0;
  for (std::size_t i = 0; i < vectors.size(); i += 7) {  // a spread over every PT/AAD length group
    const auto& v = vectors[i];
    if (v.plaintext.empty()) continue;  // custody never encrypts an empty plaintext
    auto key = test::make_known_key(Algorithm::aes_256_gcm, v.key, "custody:cavp:v" + std::to_string(i));
    auto ct = vault.gcm_encrypt(key, v.iv, v.aad, v.plaintext);
    ASSERT_TRUE(ct) << ct.error().message;
    Bytes expected = v.ciphertext;
    expected.insert(expected.end(), v.tag.begin(), v.tag.end());
    EXPECT_EQ(hex_lower(*ct), hex_lower(expected)) << "vector " << i;
    auto pt = vault.gcm_decrypt(key, v.iv, v.aad, expected);
    ASSERT_TRUE(pt);
    EXPECT_EQ(hex_lower(*pt), hex_lower(v.plaintext));
    Bytes tampered = expected;
    tampered.back() ^= 1;
    auto refused = vault.gcm_decrypt(key, v.iv, v.aad, tampered);
    ASSERT_FALSE(refused);
    EXPECT_EQ(refused.error().code, Code::invalid_ciphertext);
    ++checked;
  }
  EXPECT_GT(checked, 20);
}

TEST(TokenKeyVault, AMissingObjectIsNotFoundNotACrash) {
  TokenKeyVault vault(test::SharedToken::get().pool());
  auto ref = fresh_ref("custody:never-made:v1");
  auto a = vault.attributes(ref);
  ASSERT_FALSE(a);
  EXPECT_EQ(a.error().code, Code::not_found);
  Bytes iv(12), pt(16);
  EXPECT_FALSE(vault.gcm_encrypt(ref, iv, {}, pt));
}
