// OpenSSL failing underneath custody (tests/support/openssl_faults): a failed random generator is
// an error and never a key or nonce of zeros; a failed allocation anywhere in the PEM, ECDSA and
// BYOK code is an error, never a crash or a half result. Each allocation walk fails allocation
// 0, 1, 2, ... until the operation no longer reaches the fault.
#include <gtest/gtest.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>

#include <cstring>
#include <optional>

#include "common/byok_payload.h"
#include "common/ecdsa_der.h"
#include "common/hex.h"
#include "common/openssl_ptr.h"
#include "common/pem.h"
#include "common/random.h"
#include "daemon/core/audit/audit_log.h"
#include "tests/support/openssl_faults.h"

using namespace custody;
using namespace custody::test::openssl_faults;

namespace {

ossl::PKey keygen(const char* type, const char* param) {
  if (std::string(type) == "RSA") return ossl::PKey(EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", static_cast<size_t>(2048)));
  return ossl::PKey(EVP_PKEY_Q_keygen(nullptr, nullptr, type, param));
}

Bytes rsa_oaep_decrypt(EVP_PKEY* key, const std::string& hash, std::span<const std::uint8_t> data) {
  ossl::PKeyCtx ctx(EVP_PKEY_CTX_new(key, nullptr));
  const EVP_MD* md = hash == "sha1" ? EVP_sha1() : EVP_sha256();
  std::size_t len = 0;
  if (!ctx || EVP_PKEY_decrypt_init(ctx.get()) != 1 || EVP_PKEY_CTX_set_rsa_padding(ctx.get(), RSA_PKCS1_OAEP_PADDING) != 1 ||
      EVP_PKEY_CTX_set_rsa_oaep_md(ctx.get(), md) != 1 || EVP_PKEY_CTX_set_rsa_mgf1_md(ctx.get(), md) != 1 ||
      EVP_PKEY_decrypt(ctx.get(), nullptr, &len, data.data(), data.size()) != 1)
    return {};
  Bytes out(len);
  if (EVP_PKEY_decrypt(ctx.get(), out.data(), &len, data.data(), data.size()) != 1) return {};
  out.resize(len);
  return out;
}

// Runs produce with allocation n failing, for n = 0, 1, ... until it no longer reaches the fault,
// and checks each result with accept (an error, or the right answer) once the fault is disarmed,
// so that the check itself never meets a failing allocation. Returns the failure points walked.
template <class Produce, class Accept>
std::size_t walk_allocation_failures(const char* what, Produce produce, Accept accept) {
  for (std::size_t n = 0; n < 20000; ++n) {
    std::optional<decltype(produce())> result;
    bool reached = false;
    {
      FailAllocation fault(n);
      result.emplace(produce());
      reached = fault.fired();
    }
    if (!accept(*result)) {
      ADD_FAILURE() << what << ": a wrong result with allocation " << n << " failing";
      return n;
    }
    if (!reached) return n;
  }
  ADD_FAILURE() << what << ": the walk did not end";
  return 0;
}

constexpr std::size_t kRsaBytes = 256;  // the test job keys are RSA-2048: the walks stay fast
const std::uint8_t kKey[32] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
                               17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32};

}  // namespace

TEST(OpenSslFaults, TheAllocationHooksAreInstalled) { EXPECT_TRUE(allocation_hooks_installed()); }

TEST(OpenSslFaults, AFailedRandomGeneratorIsAnErrorAndLeavesZerosNotOldBytes) {
  std::uint8_t buf[32];
  std::memset(buf, 0xAB, sizeof buf);
  {
    FailRandom fault;
    auto r = fill_random(buf);
    EXPECT_FALSE(r);
    EXPECT_GE(fault.calls(), 1);
  }
  for (std::uint8_t b : buf) ASSERT_EQ(b, 0) << "bytes from before the failed call survived";
  ASSERT_TRUE(fill_random(buf));
}

TEST(OpenSslFaults, AGeneratorThatClaimsSuccessWithoutWritingIsAnError) {
  std::uint8_t buf[32];
  FailRandom fault(FailRandom::Mode::silent);
  auto r = fill_random(buf);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().find("zeros"), std::string::npos) << r.error();
}

TEST(OpenSslFaults, TheByokPayloadIsNeverWrappedUnderAKeyFromAFailedGenerator) {
  auto job = keygen("RSA", nullptr);
  ASSERT_TRUE(job);
  auto pem = public_key_pem(job.get());
  ASSERT_TRUE(pem);
  for (auto mode : {FailRandom::Mode::fail, FailRandom::Mode::silent}) {
    FailRandom fault(mode);
    auto payload = byok::rsa_aes_kwp_payload(*pem, "sha256", kKey);
    EXPECT_FALSE(payload) << "a payload was built with the generator failing (mode " << static_cast<int>(mode) << ")";
  }
  // And with a working generator, E is random and unwraps K.
  auto payload = byok::rsa_aes_kwp_payload(*pem, "sha256", kKey);
  ASSERT_TRUE(payload) << payload.error();
  ASSERT_EQ(payload->size(), kRsaBytes + 40u);
  const Bytes e = rsa_oaep_decrypt(job.get(), "sha256", std::span(payload->data(), kRsaBytes));
  ASSERT_EQ(e.size(), 32u);
  EXPECT_NE(e, Bytes(32, 0));
  auto rewrapped = byok::kwp_wrap(e, kKey);
  ASSERT_TRUE(rewrapped);
  EXPECT_EQ(*rewrapped, Bytes(payload->begin() + kRsaBytes, payload->end()));
}

TEST(OpenSslFaults, EveryFailedAllocationInEcdsaDerIsAnError) {
  Bytes raw(64, 0x5A);
  const Bytes want = *ecdsa_signature_der(raw);
  EXPECT_GT(walk_allocation_failures(
                "ecdsa_signature_der", [&] { return ecdsa_signature_der(raw); },
                [&](const auto& der) { return !der || *der == want; }),
            0u);
}

TEST(OpenSslFaults, EveryFailedAllocationInPemCodeIsAnErrorOrTheRightAnswer) {
  auto key = keygen("EC", "P-256");
  ASSERT_TRUE(key);
  const std::string want = *public_key_pem(key.get());
  EXPECT_GT(walk_allocation_failures(
                "public_key_pem", [&] { return public_key_pem(key.get()); },
                [&](const auto& pem) { return !pem || *pem == want; }),
            0u);
  EXPECT_GT(walk_allocation_failures(
                "read_public_key_pem", [&] { return read_public_key_pem(want); },
                [&](const auto& read) { return !read || EVP_PKEY_eq(read.get(), key.get()) == 1; }),
            0u);
  ossl::MdCtx ctx(EVP_MD_CTX_new());
  std::size_t len = 0;
  const std::string message = "report";
  const auto* m = reinterpret_cast<const unsigned char*>(message.data());
  ASSERT_EQ(EVP_DigestSignInit(ctx.get(), nullptr, EVP_sha256(), nullptr, key.get()), 1);
  ASSERT_EQ(EVP_DigestSign(ctx.get(), nullptr, &len, m, message.size()), 1);
  Bytes sig(len);
  ASSERT_EQ(EVP_DigestSign(ctx.get(), sig.data(), &len, m, message.size()), 1);
  sig.resize(len);
  // A signature over another message never verifies, whatever fails; the right one may fail to.
  EXPECT_GT(walk_allocation_failures(
                "verify (forged)", [&] { return verify_sha256_signature(key.get(), "forged", sig); },
                [](bool verified) { return !verified; }),
            0u);
  EXPECT_GT(walk_allocation_failures(
                "verify", [&] { return verify_sha256_signature(key.get(), message, sig); }, [](bool) { return true; }),
            0u);
  EXPECT_TRUE(verify_sha256_signature(key.get(), message, sig));
}

TEST(OpenSslFaults, EveryFailedAllocationInTheByokPayloadIsAnError) {
  auto job = keygen("RSA", nullptr);
  ASSERT_TRUE(job);
  const std::string pem = *public_key_pem(job.get());
  const Bytes kek(kKey, kKey + 32);
  const Bytes want_kwp = *byok::kwp_wrap(kek, kKey);
  EXPECT_GT(walk_allocation_failures(
                "kwp_wrap", [&] { return byok::kwp_wrap(kek, kKey); }, [&](const auto& w) { return !w || *w == want_kwp; }),
            0u);
  for (const char* algorithm : {"hmac-sha256", "aes-256-gcm"}) {
    const std::string want = *byok::key_check_value(algorithm, kKey);
    EXPECT_EQ(want.size(), 6u);
    EXPECT_GT(walk_allocation_failures(
                  "key_check_value", [&] { return byok::key_check_value(algorithm, kKey); },
                  [&](const auto& kcv) { return !kcv || *kcv == want; }),
              0u)
        << algorithm;
  }
  // Whole or nothing: a payload that exists unwraps to K.
  EXPECT_GT(walk_allocation_failures(
                "rsa_aes_kwp_payload", [&] { return byok::rsa_aes_kwp_payload(pem, "sha1", kKey); },
                [&](const auto& payload) {
                  if (!payload) return true;
                  if (payload->size() != kRsaBytes + 40u) return false;
                  const Bytes e = rsa_oaep_decrypt(job.get(), "sha1", std::span(payload->data(), kRsaBytes));
                  auto again = byok::kwp_wrap(e, kKey);
                  return again && *again == Bytes(payload->begin() + kRsaBytes, payload->end());
                }),
            0u);
}

// A digest names things (the audit chain, key ids, challenges): OpenSSL failing under it is an
// error each caller handles (the audit write fails, the request answers 503), never a stand-in
// digest and never an abort of the daemon.
TEST(OpenSslFaults, EveryFailedAllocationInSha256IsAnErrorOrTheRightDigest) {
  const std::string text = "abc";
  const std::string want = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
  EXPECT_GT(walk_allocation_failures(
                "sha256_hex", [&] { return sha256_hex(to_bytes(text)); },
                [&](const Expected<std::string, std::string>& r) { return !r || *r == want; }),
            0u);
  EXPECT_GT(walk_allocation_failures(
                "sha256", [&] { return sha256(to_bytes(text)); },
                [&](const Expected<Bytes, std::string>& r) { return !r || hex_lower(*r) == want; }),
            0u);
  EXPECT_GT(walk_allocation_failures(
                "audit_line_hash", [&] { return core::audit_line_hash(text); },
                [&](const Expected<std::string, std::string>& r) { return !r || *r == want; }),
            0u);
}
