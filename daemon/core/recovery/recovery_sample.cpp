#include "daemon/core/recovery/recovery_sample.h"

#include "common/hex.h"
#include "daemon/core/crypto/blob_codec.h"
#include "daemon/core/crypto/hkdf.h"

namespace custody::core {
namespace {

constexpr std::uint8_t kEmptyContext[] = {0x00, 0x00};
constexpr std::size_t kSampleSize = 32;

Outcome<std::string> digest(std::span<const std::uint8_t> data) {
  auto d = sha256_hex(data);
  if (!d) return fail(Code::unavailable, "cannot hash a recovery sample: " + d.error());
  return std::move(*d);
}

// HKDF-Expand(K, info, 32) is one HMAC: T(1) = HMAC(K, info || 0x01).
Bytes hkdf_single_block_message(std::span<const std::uint8_t> info) {
  Bytes m(info.begin(), info.end());
  m.push_back(0x01);
  return m;
}

}  // namespace

Outcome<BundleSample> make_sample(KeyVault& vault, const std::string& key_name, Algorithm algorithm,
                                  const KeyVersion& version) {
  SecureBytes plain(kSampleSize);
  if (auto r = vault.random(plain); !r) return unexpected(r.error());
  if (algorithm == Algorithm::hmac_sha256) {
    const Bytes info(plain.begin(), plain.end());  // random, not secret
    auto derived = hkdf_expand([&](std::span<const std::uint8_t> m) { return vault.hmac_sha256(version.object, m); },
                               info, kSampleSize);
    if (!derived) return unexpected(derived.error());
    auto d = digest(*derived);
    if (!d) return unexpected(d.error());
    return BundleSample{info, std::move(*d)};
  }
  std::uint8_t iv[kIvSize];
  if (auto r = vault.random(iv); !r) return unexpected(r.error());
  Bytes blob = encode_blob_header(key_name, version.version, iv);
  const Bytes aad = blob_aad(blob, kEmptyContext);
  auto sealed = vault.gcm_encrypt(version.object, iv, aad, plain);
  if (!sealed) return unexpected(sealed.error());
  blob.insert(blob.end(), sealed->begin(), sealed->end());
  auto d = digest(plain);
  if (!d) return unexpected(d.error());
  return BundleSample{std::move(blob), std::move(*d)};
}

Outcome<std::string> sample_digest(KeyVault& vault, const std::string& key_name, std::uint32_t version,
                                   Algorithm algorithm, const ObjectRef& ref, const BundleSample& sample) {
  if (algorithm == Algorithm::hmac_sha256) {
    auto mac = vault.hmac_sha256(ref, hkdf_single_block_message(sample.blob));
    if (!mac) return unexpected(mac.error());
    return digest(*mac);
  }
  auto parsed = parse_blob(sample.blob);
  if (!parsed) return unexpected(parsed.error());
  if (parsed->key_name != key_name || parsed->version != version)
    return fail(Code::invalid_argument, "the sample of " + key_name + " v" + std::to_string(version) + " names another key or version");
  const Bytes aad = blob_aad(parsed->header, kEmptyContext);
  auto plain = vault.gcm_decrypt(ref, parsed->iv, aad, parsed->ciphertext_and_tag);
  if (!plain) return unexpected(plain.error());
  return digest(*plain);
}

p11::Result<std::string> sample_digest(p11::Session& s, const p11::quirks::TokenQuirks& quirks, CK_OBJECT_HANDLE key,
                                       Algorithm algorithm, const std::string& key_name, std::uint32_t version,
                                       const BundleSample& sample) {
  auto hashed = [](std::span<const std::uint8_t> data) -> p11::Result<std::string> {
    auto d = sha256_hex(data);
    if (!d) return unexpected(p11::own_fault(p11::Fault::bad_reply, "hash a recovery sample: " + d.error()));
    return std::move(*d);
  };
  if (algorithm == Algorithm::hmac_sha256) {
    CK_MECHANISM mech{CKM_SHA256_HMAC, nullptr, 0};
    auto mac = s.sign(mech, key, hkdf_single_block_message(sample.blob), 32);
    if (!mac) return unexpected(mac.error());
    return hashed(*mac);
  }
  auto parsed = parse_blob(sample.blob);
  if (!parsed || parsed->key_name != key_name || parsed->version != version) return std::string();
  const Bytes aad = blob_aad(parsed->header, kEmptyContext);
  CK_GCM_PARAMS params{const_cast<CK_BYTE*>(parsed->iv.data()), parsed->iv.size(), parsed->iv.size() * 8,
                       const_cast<CK_BYTE*>(aad.data()), aad.size(), 128};
  CK_MECHANISM mech{CKM_AES_GCM, &params, sizeof params};
  auto plain = s.decrypt(mech, key, parsed->ciphertext_and_tag, parsed->ciphertext_and_tag.size());
  if (!plain) {
    // A tag that does not verify is the answer "other material", not a token fault.
    if (plain.error().fault == p11::Fault::token && p11::quirks::is_authentication_failure(quirks, plain.error().rv))
      return std::string();
    return unexpected(plain.error());
  }
  return hashed(*plain);
}

}  // namespace custody::core
