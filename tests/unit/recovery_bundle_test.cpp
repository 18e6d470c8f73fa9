// The recovery bundle codec (CONTRACT §11) without a token: B round-trips, malformed bundles are
// refused by name, and an envelope verifies only against the pinned key, over the exact bytes.
#include <gtest/gtest.h>
#include <openssl/evp.h>

#include <boost/json.hpp>

#include "common/base64.h"
#include "common/openssl_ptr.h"
#include "common/pem.h"
#include "daemon/core/recovery/recovery_bundle.h"
#include "daemon/core/recovery/recovery_key.h"

using namespace custody;
using namespace custody::core;
namespace json = boost::json;

namespace {

RecoveryBundle sample_bundle() {
  RecoveryBundle b;
  b.id = "0123456789abcdef0123456789abcdef";
  b.created_at = 1780000000;
  b.daemon_version = "1.0.0";
  b.instance_id = "inst";
  b.recovery_key_id = std::string(64, 'a');
  b.mechanism = "rsa-oaep-sha1";
  b.approved_by = {"alice", "bob"};
  BundleKey k;
  k.name = "orders";
  k.algorithm = Algorithm::aes_256_gcm;
  k.state = KeyState::enabled;
  k.policy = json::parse(R"([{"uid":1000,"operations":["wrap","unwrap"]}])");
  k.current_version = 2;
  k.min_decrypt_version = 1;
  BundleVersion v1{1, "destroyed", "generated", 1770000000, std::nullopt, std::nullopt};
  BundleVersion v2{2, "enabled", "generated", 1775000000, Bytes(384, 7), BundleSample{Bytes(60, 9), std::string(64, 'f')}};
  k.versions = {v1, v2};
  b.keys.push_back(k);
  return b;
}

std::string with(std::string text, const std::string& from, const std::string& to) {
  const auto at = text.find(from);
  EXPECT_NE(at, std::string::npos) << from;
  return text.replace(at, from.size(), to);
}

// An EC P-256 key pair made with OpenSSL: the stand-in for a daemon's attestation key.
struct Signer {
  ossl::PKey key;
  std::string pem;
  Signer() {
    key.reset(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"));
    pem = *public_key_pem(key.get());
  }
  Bytes sign(const std::string& message) const {
    ossl::MdCtx ctx(EVP_MD_CTX_new());
    std::size_t len = 0;
    EXPECT_EQ(EVP_DigestSignInit(ctx.get(), nullptr, EVP_sha256(), nullptr, key.get()), 1);
    EXPECT_EQ(EVP_DigestSign(ctx.get(), nullptr, &len, reinterpret_cast<const unsigned char*>(message.data()), message.size()), 1);
    Bytes sig(len);
    EXPECT_EQ(EVP_DigestSign(ctx.get(), sig.data(), &len, reinterpret_cast<const unsigned char*>(message.data()), message.size()), 1);
    sig.resize(len);
    return sig;
  }
  BundleEnvelope envelope(const std::string& b) const {
    return BundleEnvelope{b, sign(b), pem, *public_key_id(pem)};
  }
};

}  // namespace

TEST(RecoveryBundle, EncodesAndParsesBackTheSameBundle) {
  const std::string b = encode_bundle(sample_bundle());
  auto parsed = parse_bundle(b);
  ASSERT_TRUE(parsed) << parsed.error().message;
  EXPECT_EQ(encode_bundle(*parsed), b);
  EXPECT_EQ(parsed->keys.at(0).versions.at(1).wrapped->size(), 384u);
  EXPECT_FALSE(parsed->keys.at(0).versions.at(0).wrapped);
  EXPECT_NE(b.find("\"format\":\"custody.recovery-bundle.v1\""), std::string::npos);
  EXPECT_NE(b.find("\"created_at\":\"2026-05-28T20:26:40Z\""), std::string::npos) << b;
}

TEST(RecoveryBundle, RefusesMalformedBundlesByName) {
  const std::string good = encode_bundle(sample_bundle());
  const std::pair<std::string, std::string> cases[] = {
      {with(good, "custody.recovery-bundle.v1", "custody.recovery-bundle.v2"), "format"},
      {with(good, "\"approved_by\"", "\"surprise\":1,\"approved_by\""), "surprise"},
      {with(good, "\"current_version\":2", "\"current_version\":3"), "versions"},
      {with(good, "\"version\":2", "\"version\":3"), "version"},
      {with(good, "\"state\":\"destroyed\",\"origin\":\"generated\"", "\"state\":\"destroyed\",\"wrapped\":\"AA==\",\"origin\":\"generated\""), "destroyed"},
      {with(good, "\"min_decrypt_version\":1", "\"min_decrypt_version\":5"), "min_decrypt_version"},
      {with(good, "rsa-oaep-sha1", "rsa-pkcs1"), "mechanism"},
      {with(good, "\"name\":\"orders\"", "\"name\":\"Orders!\""), "name"},
      {with(good, "2026-05-28T20:26:40Z", "yesterday"), "created_at"},
      {good.substr(0, good.size() / 2), "JSON"},
  };
  for (const auto& [text, named] : cases) {
    auto r = parse_bundle(text);
    ASSERT_FALSE(r) << text;
    EXPECT_EQ(r.error().code, Code::invalid_argument);
    EXPECT_NE(r.error().message.find(named), std::string::npos) << r.error().message;
  }
}

TEST(RecoveryBundle, AnEnvelopeVerifiesOnlyAgainstThePinnedKeyOverTheExactBytes) {
  Signer primary, other;
  const std::string b = encode_bundle(sample_bundle());
  const BundleEnvelope good = primary.envelope(b);
  ASSERT_TRUE(verify_envelope(good, primary.pem));
  // Through JSON and back, as it travels.
  auto parsed = parse_envelope(json::value(envelope_to_json(good)));
  ASSERT_TRUE(parsed);
  EXPECT_TRUE(verify_envelope(*parsed, primary.pem));

  BundleEnvelope flipped = good;
  flipped.bundle[flipped.bundle.size() / 2] ^= 0x01;
  EXPECT_FALSE(verify_envelope(flipped, primary.pem));
  EXPECT_FALSE(verify_envelope(good, other.pem)) << "accepted with another pinned key";
  const BundleEnvelope impostor = other.envelope(b);  // signed and labelled by another key
  auto r = verify_envelope(impostor, primary.pem);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("pinned"), std::string::npos) << r.error().message;
  BundleEnvelope mixed = good;  // the primary's key, someone else's signature
  mixed.signature = other.sign(b);
  EXPECT_FALSE(verify_envelope(mixed, primary.pem));
}

TEST(RecoveryKey, ARecoveryKeyIsRsaOfAtLeast3072Bits) {
  ossl::PKey small(EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", static_cast<size_t>(2048)));
  auto pem = public_key_pem(small.get());
  ASSERT_TRUE(pem);
  EXPECT_FALSE(rsa_public_key_from_pem(*pem));
  ossl::PKey big(EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", static_cast<size_t>(3072)));
  auto big_pem = public_key_pem(big.get());
  auto rsa = rsa_public_key_from_pem(*big_pem);
  ASSERT_TRUE(rsa) << rsa.error();
  // Back to PEM from the numbers the token would hold: the same key_id.
  EXPECT_EQ(*public_key_id(*rsa_public_key_pem(*rsa)), *public_key_id(*big_pem));
  EXPECT_FALSE(recovery_object_id("ABC"));
  EXPECT_EQ(recovery_object_id(std::string(64, 'a'))->size(), 32u);
}
