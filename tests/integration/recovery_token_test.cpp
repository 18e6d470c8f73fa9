// Recovery in a real SoftHSMv2 token (CONTRACT §11), with raw PKCS#11 calls from test code: the
// token itself, not custody's code, refuses to let a key out unless the key was made for recovery
// and the wrapping key was marked trusted by the SO (custodyctl recovery trust, in another
// process: only an SO session can set CKA_TRUSTED). A recovery key's wrap unwraps (with the
// recovery private key, here in the same token) into a key that reproduces the sample.
#include <gtest/gtest.h>

#include <iostream>
#include <openssl/rand.h>

#include <boost/json.hpp>

#include "daemon/core/keys/token_key_vault.h"
#include "daemon/core/recovery/recovery_key.h"
#include "daemon/core/recovery/recovery_sample.h"
#include "daemon/core/recovery/recovery_token.h"
#include "pkcs11/trusted_wrap.h"
#include "tests/support/softhsm_token.h"

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

CK_OBJECT_HANDLE secret_key(p11::Session& s, const ObjectRef& ref) {
  p11::AttributeTemplate t;
  t.add_ulong(CKA_CLASS, CKO_SECRET_KEY).add_bytes(CKA_ID, ref.id);
  auto h = s.find_one(t, ref.label);
  EXPECT_TRUE(h) << (h ? "" : h.error().describe());
  return h ? *h : CK_INVALID_HANDLE;
}

// A token of its own, on which the ceremony runs first as it does in production: custodyctl
// recovery init (the recovery pair, user PIN) and recovery trust (the SO), each in its own
// process; then this process opens the token like the daemon does. (The recovery pair sits in the
// same token here only so that one token can show the whole round trip.)
class RecoveryTokenTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new test::TempDir();
    files_ = test::make_softhsm_token(dir_->path(), "recovery-it");
    const std::string env = "SOFTHSM2_CONF='" + files_.conf + "' ";
    const std::string token = " --module " + std::string(CUSTODY_SOFTHSM_MODULE) + " --token-label recovery-it";
    test::write_file(dir_->path() + "/so.pin", "so-pin-5678\n");
    ASSERT_EQ(test::run(env + CUSTODYCTL_PATH + " --json recovery init" + token + " --pin-file " + files_.pin_file +
                        " --out " + dir_->path() + "/recovery.pem > " + dir_->path() + "/init.json"),
              0);
    ASSERT_EQ(test::run(env + CUSTODYCTL_PATH + " recovery trust " + dir_->path() + "/recovery.pem" + token +
                        " --so-pin-file " + dir_->path() + "/so.pin >/dev/null"),
              0);
    key_id_ = std::string(boost::json::parse(test::read_file(dir_->path() + "/init.json")).at("key_id").as_string());
    ::setenv("SOFTHSM2_CONF", files_.conf.c_str(), 1);
    auto module = p11::Module::load(CUSTODY_SOFTHSM_MODULE, std::nullopt);
    ASSERT_TRUE(module) << module.error();
    module_ = module->release();
    pool_ = new p11::SessionPool(*module_, p11::TokenSelector{std::string("recovery-it"), std::nullopt},
                                 SecureString(files_.pin.c_str()), 2);
    auto started = pool_->start();
    ASSERT_TRUE(started) << started.error();
  }
  static void TearDownTestSuite() {
    delete pool_;
    delete module_;
    delete dir_;
  }
  static p11::SessionPool& pool() { return *pool_; }
  static std::string key_id_;
  static test::TempDir* dir_;
  static test::TokenFiles files_;
  static p11::Module* module_;
  static p11::SessionPool* pool_;
};
std::string RecoveryTokenTest::key_id_;
test::TempDir* RecoveryTokenTest::dir_ = nullptr;
test::TokenFiles RecoveryTokenTest::files_;
p11::Module* RecoveryTokenTest::module_ = nullptr;
p11::SessionPool* RecoveryTokenTest::pool_ = nullptr;

}  // namespace

TEST_F(RecoveryTokenTest, OnlyARecoveryKeyLeavesAndOnlyUnderTheTrustedKey) {
  auto& pool = RecoveryTokenTest::pool();
  TokenKeyVault vault(pool);
  auto recovery = fresh_ref("custody:rec-test:v1");
  auto plain = fresh_ref("custody:plain-test:v1");
  ASSERT_TRUE(vault.generate(Algorithm::aes_256_gcm, recovery, true));
  ASSERT_TRUE(vault.generate(Algorithm::aes_256_gcm, plain, false));
  // The attributes the token reports for each, read back.
  auto ra = vault.attributes(recovery);
  ASSERT_TRUE(ra);
  EXPECT_EQ((*ra)["extractable"], std::optional<bool>(true));
  EXPECT_EQ((*ra)["wrap_with_trusted"], std::optional<bool>(true));
  EXPECT_EQ((*ra)["sensitive"], std::optional<bool>(true));
  EXPECT_TRUE(vault.verify(Algorithm::aes_256_gcm, recovery, true, true));
  EXPECT_FALSE(vault.verify(Algorithm::aes_256_gcm, recovery, true, false)) << "a recovery key passed as a plain one";

  auto lease = pool.acquire();
  ASSERT_TRUE(lease);
  auto& s = lease->session();
  const auto id = *recovery_object_id(key_id_);
  auto trusted = p11::find_trusted_public_key(s, id);
  ASSERT_TRUE(trusted) << trusted.error().describe();
  // An untrusted RSA public key that may wrap: the token refuses a recovery key under it.
  p11::AttributeTemplate pub, priv;
  const CK_BYTE e[] = {1, 0, 1};
  pub.add_ulong(CKA_MODULUS_BITS, 2048).add_bytes(CKA_PUBLIC_EXPONENT, e).add_bool(CKA_TOKEN, false).add_bool(CKA_WRAP, true);
  priv.add_bool(CKA_TOKEN, false).add_bool(CKA_UNWRAP, true).add_bool(CKA_SENSITIVE, true);
  auto untrusted = s.generate_key_pair(CKM_RSA_PKCS_KEY_PAIR_GEN, pub, priv);
  ASSERT_TRUE(untrusted);
  // The hash the token takes for this wrap (probed: SHA-256 where it can, else SHA-1).
  auto hash = p11::probe_oaep_wrap(s, *trusted);
  ASSERT_TRUE(hash) << hash.error().describe();
  std::cout << "[ token wraps with " << hash->name << " ]\n";
  auto out = p11::wrap_key_oaep(s, *hash, untrusted->first, secret_key(s, recovery));
  ASSERT_FALSE(out) << "the token wrapped a recovery key under an untrusted key";
  EXPECT_EQ(out.error().rv, CKR_KEY_NOT_WRAPPABLE) << out.error().describe();
  // A key made without recovery stays in the token even under the trusted key.
  auto refused = p11::wrap_key_oaep(s, *hash, *trusted, secret_key(s, plain));
  ASSERT_FALSE(refused) << "the token wrapped a non-extractable custody key";
  EXPECT_EQ(refused.error().rv, CKR_KEY_UNEXTRACTABLE) << refused.error().describe();
  auto wrapped = p11::wrap_key_oaep(s, *hash, *trusted, secret_key(s, recovery));
  ASSERT_TRUE(wrapped) << wrapped.error().describe();
  EXPECT_EQ(wrapped->size(), 384u);
  // The restriction cannot be relaxed afterwards.
  p11::AttributeTemplate relax;
  relax.add_bool(CKA_WRAP_WITH_TRUSTED, false);
  EXPECT_NE(s.api()->C_SetAttributeValue(s.handle(), secret_key(s, recovery), relax.data(), relax.size()), CKR_OK);
  (void)s.destroy_object(untrusted->first);
  (void)s.destroy_object(untrusted->second);
}

TEST_F(RecoveryTokenTest, AWrappedVersionUnwrapsIntoAKeyThatReproducesItsSample) {
  auto& pool = RecoveryTokenTest::pool();
  TokenKeyVault vault(pool);
  RecoveryToken token(pool);
  for (auto algorithm : {Algorithm::aes_256_gcm, Algorithm::hmac_sha256}) {
    SCOPED_TRACE(algorithm_name(algorithm));
    KeyVersion v;
    v.version = 1;
    v.object = fresh_ref(std::string("custody:rt-") + algorithm_name(algorithm) + ":v1");
    ASSERT_TRUE(vault.generate(algorithm, v.object, true));
    auto hash = token.wrap_mechanism(key_id_);
    ASSERT_TRUE(hash) << hash.error().message;
    BundleVersion bv;
    bv.version = 1;
    bv.state = "enabled";
    auto wrapped = token.wrap(key_id_, *hash, v.object);
    ASSERT_TRUE(wrapped) << wrapped.error().message;
    bv.wrapped = *wrapped;
    auto sample = make_sample(vault, "rt", algorithm, v);
    ASSERT_TRUE(sample) << sample.error().message;
    bv.sample = *sample;
    // The drill: passes, and leaves nothing.
    auto verdict = token.drill(key_id_, *hash, "rt", algorithm, bv);
    ASSERT_TRUE(verdict) << verdict.error().message;
    EXPECT_EQ(*verdict, "");
    auto restored = fresh_ref(std::string("custody:rt-restored-") + algorithm_name(algorithm) + ":v1");
    ASSERT_TRUE(token.unwrap_into(key_id_, *hash, "rt", algorithm, bv, restored, true));
    EXPECT_TRUE(vault.verify(algorithm, restored, false, true));
    auto digest = sample_digest(vault, "rt", 1, algorithm, restored, *bv.sample);
    ASSERT_TRUE(digest);
    EXPECT_EQ(*digest, bv.sample->sha256);
    // A sample from other material is refused, and the unwrapped object does not stay.
    BundleVersion other = bv;
    other.sample->sha256 = std::string(64, '0');
    auto target = fresh_ref(std::string("custody:rt-other-") + algorithm_name(algorithm) + ":v1");
    auto refused = token.unwrap_into(key_id_, *hash, "rt", algorithm, other, target, true);
    ASSERT_FALSE(refused);
    EXPECT_EQ(refused.error().code, Code::invalid_argument);
    EXPECT_EQ(*vault.carriers(target), 0u);
    auto drill = token.drill(key_id_, *hash, "rt", algorithm, other);
    ASSERT_TRUE(drill);
    EXPECT_NE(*drill, "");
  }
}
