// The OpenSSL RAII helpers and the checked encoders built on them: a failed encoding is an error,
// never a length of -1 turned into a size, and malformed input is refused.
#include <gtest/gtest.h>
#include <openssl/ec.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>

#include "common/ecdsa_der.h"
#include "common/openssl_ptr.h"
#include "common/pem.h"

using namespace custody;

namespace {

ossl::PKey p256_key() {
  return ossl::PKey(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"));
}

int failing_i2d(const EVP_PKEY*, unsigned char**) { return -1; }

}  // namespace

TEST(OpenSslPtr, AFailedI2dIsAnEmptyDerNotANegativeLength) {
  auto key = p256_key();
  ASSERT_TRUE(key);
  const ossl::Der failed = ossl::encode_der(key.get(), failing_i2d);
  EXPECT_FALSE(failed);
  EXPECT_EQ(failed.size, 0u);
  const ossl::Der der = ossl::encode_der(key.get(), i2d_PUBKEY);
  ASSERT_TRUE(der);
  EXPECT_EQ(der.size, 91u);  // SubjectPublicKeyInfo of a P-256 key, uncompressed point
}

TEST(EcdsaDer, MalformedRawSignaturesAreErrorsNotEncodings) {
  for (std::size_t size : {0u, 1u, 63u, 65u, 200u}) {
    const Bytes raw(size, 0x11);
    auto der = ecdsa_signature_der(raw);
    EXPECT_FALSE(der) << size << " bytes were encoded";
  }
}

TEST(EcdsaDer, RAndSRoundTripThroughOpenSsl) {
  Bytes raw(64);
  for (std::size_t i = 0; i < raw.size(); ++i) raw[i] = static_cast<std::uint8_t>(i + 1);
  auto der = ecdsa_signature_der(raw);
  ASSERT_TRUE(der) << der.error();
  const unsigned char* p = der->data();
  ossl::EcdsaSig sig(d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(der->size())));
  ASSERT_TRUE(sig);
  EXPECT_EQ(p, der->data() + der->size());
  Bytes back(64);
  ASSERT_EQ(BN_bn2binpad(ECDSA_SIG_get0_r(sig.get()), back.data(), 32), 32);
  ASSERT_EQ(BN_bn2binpad(ECDSA_SIG_get0_s(sig.get()), back.data() + 32, 32), 32);
  EXPECT_EQ(back, raw);
}

TEST(Pem, WritingNoKeyIsAnErrorAndAKeyRoundTrips) {
  EXPECT_FALSE(public_key_pem(nullptr));
  auto key = p256_key();
  auto pem = public_key_pem(key.get());
  ASSERT_TRUE(pem) << pem.error();
  auto back = read_public_key_pem(*pem);
  ASSERT_TRUE(back);
  EXPECT_EQ(EVP_PKEY_eq(back.get(), key.get()), 1);
  EXPECT_FALSE(read_public_key_pem("not a pem"));
  EXPECT_FALSE(verify_sha256_signature(nullptr, "m", {}));
}
