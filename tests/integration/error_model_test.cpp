// One error model: CK_RV is what the token said; what custody decides itself (a saturated pool,
// an object missing or copied) is a Fault of its own, mapped once to the contract's status.
#include <gtest/gtest.h>

#include "daemon/core/keys/token_key_vault.h"
#include "tests/integration/test_keys.h"

using namespace custody;
using namespace custody::core;
using namespace std::chrono_literals;

TEST(ErrorModel, ASaturatedPoolIsUnavailableNotAnInternalError) {
  auto& token = test::SharedToken::get();
  p11::SessionPool pool(token.module(), p11::TokenSelector{token.files().label, std::nullopt},
                        SecureString(token.files().pin), 1);
  ASSERT_TRUE(pool.start());
  auto held = pool.acquire(500ms);
  ASSERT_TRUE(held);
  auto waited = pool.acquire(20ms);
  ASSERT_FALSE(waited);
  // Before: CKR_FUNCTION_FAILED, a code the token never sent, answered 500.
  EXPECT_EQ(waited.error().fault, p11::Fault::pool_timeout);
  EXPECT_EQ(waited.error().severity(), p11::Severity::operation);  // nothing to evict or reset
  const Error e = token_error(waited.error(), "encrypt");
  EXPECT_EQ(e.code, Code::unavailable);
  EXPECT_EQ(http_status(e.code), 503);  // the transport adds Retry-After to a 503
}

TEST(ErrorModel, APoolResettingTheModuleIsTheTokenBeingAway) {
  const auto resetting = p11::own_fault(p11::Fault::pool_resetting, "SessionPool::acquire");
  EXPECT_EQ(resetting.rv, static_cast<CK_RV>(CKR_OK));  // before: an invented CKR_DEVICE_REMOVED
  EXPECT_EQ(resetting.severity(), p11::Severity::device);
  EXPECT_EQ(token_error(resetting, "decrypt").code, Code::unavailable);
}

TEST(ErrorModel, MissingAndCopiedObjectsAreCustodysFindingsNotTokenCodes) {
  auto& pool = test::SharedToken::get().pool();
  auto lease = pool.acquire();
  ASSERT_TRUE(lease);
  auto& s = lease->session();
  Bytes id(16, 0);
  id[0] = static_cast<std::uint8_t>(::getpid());
  id[1] = 0xE7;
  p11::AttributeTemplate find;
  find.add_ulong(CKA_CLASS, CKO_SECRET_KEY).add_bytes(CKA_ID, id);
  auto missing = s.find_one(find, "nothing");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().fault, p11::Fault::not_found);
  EXPECT_EQ(missing.error().rv, static_cast<CK_RV>(CKR_OK));  // no token code is invented
  for (int i = 0; i < 2; ++i) {
    p11::AttributeTemplate t;
    t.add_ulong(CKA_CLASS, CKO_SECRET_KEY).add_ulong(CKA_KEY_TYPE, CKK_GENERIC_SECRET).add_bytes(CKA_ID, id);
    t.add_bool(CKA_TOKEN, false).add_bytes(CKA_VALUE, Bytes(16, 9));
    ASSERT_TRUE(s.create_object(t));
  }
  auto two = s.find_one(find, "a copied object");
  ASSERT_FALSE(two);
  EXPECT_EQ(two.error().fault, p11::Fault::not_unique);
  EXPECT_EQ(token_error(two.error(), "find").code, Code::internal);
}

TEST(ErrorModel, AVendorCodeFromTheTokenIsAlwaysATokenError) {
  // The code custody once used for "not found" is a real HSM's to use: it stays a token error.
  const p11::P11Error vendor{CKR_VENDOR_DEFINED | 0xC057, "C_Decrypt"};
  EXPECT_EQ(vendor.fault, p11::Fault::token);
  const Error e = token_error(vendor, "decrypt");
  EXPECT_EQ(e.code, Code::internal);
  EXPECT_NE(e.message.find("the token refused"), std::string::npos) << e.message;
  EXPECT_NE(vendor.describe().find("CKR_VENDOR_DEFINED"), std::string::npos) << vendor.describe();
}

TEST(ErrorModel, RvNameKnowsTheSpecificationsCodes) {
  EXPECT_STREQ(p11::rv_name(CKR_ACTION_PROHIBITED), "CKR_ACTION_PROHIBITED");
  EXPECT_STREQ(p11::rv_name(CKR_PIN_EXPIRED), "CKR_PIN_EXPIRED");
  EXPECT_STREQ(p11::rv_name(CKR_CURVE_NOT_SUPPORTED), "CKR_CURVE_NOT_SUPPORTED");
  EXPECT_STREQ(p11::rv_name(CKR_FUNCTION_REJECTED), "CKR_FUNCTION_REJECTED");
  EXPECT_STREQ(p11::rv_name(0x201), "CKR_TOKEN_RESOURCE_EXCEEDED");
  EXPECT_STREQ(p11::rv_name(0x7777), "CKR_UNKNOWN");
}

TEST(ErrorModel, TheQuirksTableDecidesWhatATagMismatchLooksLike) {
  // The shared token is SoftHSMv2, which answers a GCM tag mismatch with CKR_GENERAL_ERROR.
  EXPECT_TRUE(test::SharedToken::get().pool().quirks().integrity_failure_is_general_error);
  const auto softhsm = p11::quirks::quirks_of("SoftHSM project", "SoftHSM v2");
  const auto other = p11::quirks::quirks_of("Example HSM", "Model 1");
  EXPECT_TRUE(p11::quirks::is_authentication_failure(softhsm, CKR_GENERAL_ERROR));
  EXPECT_FALSE(p11::quirks::is_authentication_failure(other, CKR_GENERAL_ERROR));
  EXPECT_TRUE(p11::quirks::is_authentication_failure(other, CKR_ENCRYPTED_DATA_INVALID));
  EXPECT_FALSE(p11::quirks::is_authentication_failure(softhsm, CKR_DEVICE_ERROR));
  EXPECT_FALSE(p11::quirks::is_unwrap_integrity_failure(other, CKR_GENERAL_ERROR));
  EXPECT_TRUE(p11::quirks::is_unwrap_integrity_failure(other, CKR_WRAPPED_KEY_INVALID));
}

TEST(ErrorModel, ATamperedCiphertextOnSoftHsmIsInvalidCiphertext) {
  TokenKeyVault vault(test::SharedToken::get().pool());
  auto key = test::make_known_key(Algorithm::aes_256_gcm, Bytes(32, 7), "custody:error-model:v1");
  Bytes iv(12, 3), pt(16, 4);
  auto sealed = vault.gcm_encrypt(key, iv, {}, pt);
  ASSERT_TRUE(sealed) << sealed.error().message;
  Bytes tampered(sealed->begin(), sealed->end());
  tampered.back() ^= 1;
  auto opened = vault.gcm_decrypt(key, iv, {}, tampered);
  ASSERT_FALSE(opened);
  EXPECT_EQ(opened.error().code, Code::invalid_ciphertext) << opened.error().message;
}
