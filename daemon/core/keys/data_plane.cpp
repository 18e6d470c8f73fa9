#include "daemon/core/keys/data_plane.h"

#include <openssl/rand.h>

#include "common/hex.h"
#include "daemon/core/crypto/blob_codec.h"
#include "daemon/core/crypto/hkdf.h"

namespace custody::core {
namespace {

const char* state_advice(KeyState s) {
  switch (s) {
    case KeyState::disabled: return "is disabled; an operator can enable it again";
    case KeyState::pending_destruction: return "is scheduled for destruction; an operator can cancel the destruction";
    case KeyState::destroyed: return "has been destroyed; its ciphertexts can no longer be decrypted";
    case KeyState::enabled: break;
  }
  return "is not usable";
}

// The audit record's context_sha256: a call whose context cannot be hashed cannot be audited, so
// it does not run.
Outcome<void> note_context(AuditFacts& facts, const Bytes& ctx) {
  auto digest = sha256_hex(ctx);
  if (!digest) return fail(Code::unavailable, "cannot hash the encryption context: " + digest.error());
  facts.context_sha256 = std::move(*digest);
  return {};
}

}  // namespace

Outcome<std::shared_ptr<const Key>> DataPlane::usable_key(const Peer& peer, const std::string& name, Operation op,
                                                          Algorithm algorithm, AuditFacts& facts) {
  facts.key = name;
  auto key = registry_.find(name);
  // A missing key gets the very answer a forbidden one gets: a caller must not learn which keys
  // exist by trying names.
  if (!key || !key->policy.allows(peer, op)) {
    facts.key_exists = key != nullptr;
    return fail(Code::permission_denied,
                std::string("uid ") + std::to_string(peer.uid) + " may not " + operation_name(op) + " with key '" + name + "'");
  }
  if (key->algorithm != algorithm)
    return fail(Code::invalid_argument, "key '" + name + "' is " + algorithm_name(key->algorithm) + "; " +
                                            operation_name(op) + " needs an " + algorithm_name(algorithm) + " key");
  if (key->state == KeyState::pending_destruction) pending_destruction_uses_.fetch_add(1, std::memory_order_relaxed);
  if (key->state != KeyState::enabled) return fail(Code::failed_precondition, "key '" + name + "' " + state_advice(key->state));
  return key;
}

Outcome<const KeyVersion*> DataPlane::decryptable_version(const Key& key, std::uint32_t version) {
  const KeyVersion* v = key.find_version(version);
  if (!v) return fail(Code::not_found, "key '" + key.name + "' has no version " + std::to_string(version));
  if (version < key.min_decrypt_version)
    return fail(Code::failed_precondition, "version " + std::to_string(version) + " of key '" + key.name +
                                               "' is retired (minimum decrypt version is " +
                                               std::to_string(key.min_decrypt_version) + "); rewrap data earlier");
  if (v->state != "enabled")
    return fail(Code::failed_precondition, "version " + std::to_string(version) + " of key '" + key.name + "' is " + v->state);
  return v;
}

Outcome<Sealed> DataPlane::seal(const Key& key, const Bytes& ctx, std::span<const std::uint8_t> plaintext,
                                AuditFacts& facts) {
  const KeyVersion* v = key.find_version(key.current_version);
  if (!v) return fail(Code::internal, "key '" + key.name + "' has no current version");
  facts.version = v->version;
  if (meter_) {
    auto counted = meter_->count(key.name, v->version, key.rotation.usage_limit);
    if (!counted) return unexpected(counted.error());
  }
  std::uint8_t iv[kIvSize];
  if (RAND_bytes(iv, sizeof iv) != 1) return fail(Code::internal, "no randomness for the IV");
  Bytes header = encode_blob_header(key.name, v->version, iv);
  facts.touched_key = true;
  auto sealed = vault_.gcm_encrypt(v->object, iv, blob_aad(header, ctx), plaintext);
  if (!sealed) return unexpected(sealed.error());
  Sealed out{std::move(header), v->version};
  out.ciphertext.insert(out.ciphertext.end(), sealed->begin(), sealed->end());
  return out;
}

Outcome<Secret> DataPlane::open(const Key& key, std::span<const std::uint8_t> blob, const Bytes& ctx,
                                AuditFacts& facts) {
  auto parsed = parse_blob(blob);
  if (!parsed) return unexpected(parsed.error());
  if (parsed->key_name != key.name)
    return fail(Code::invalid_ciphertext, "the ciphertext belongs to key '" + parsed->key_name + "', not '" + key.name + "'");
  facts.version = parsed->version;
  auto v = decryptable_version(key, parsed->version);
  if (!v) return unexpected(v.error());
  facts.touched_key = true;
  auto plain = vault_.gcm_decrypt((*v)->object, parsed->iv, blob_aad(parsed->header, ctx), parsed->ciphertext_and_tag);
  if (!plain) return unexpected(plain.error());
  return Secret{std::move(*plain), parsed->version};
}

Outcome<Sealed> DataPlane::wrap(const Peer& peer, const std::string& name, std::span<const std::uint8_t> plaintext,
                                const EncryptionContext& context, AuditFacts& facts) {
  const Bytes ctx = encode_context(context);
  if (auto noted = note_context(facts, ctx); !noted) return unexpected(noted.error());
  auto key = usable_key(peer, name, Operation::wrap, Algorithm::aes_256_gcm, facts);
  if (!key) return unexpected(key.error());
  if (plaintext.empty() || plaintext.size() > kMaxWrapPlaintext)
    return fail(Code::invalid_argument, "plaintext must be 1.." + std::to_string(kMaxWrapPlaintext) + " bytes");
  return seal(**key, ctx, plaintext, facts);
}

Outcome<Secret> DataPlane::unwrap(const Peer& peer, const std::string& name, std::span<const std::uint8_t> blob,
                                  const EncryptionContext& context, AuditFacts& facts) {
  const Bytes ctx = encode_context(context);
  if (auto noted = note_context(facts, ctx); !noted) return unexpected(noted.error());
  auto key = usable_key(peer, name, Operation::unwrap, Algorithm::aes_256_gcm, facts);
  if (!key) return unexpected(key.error());
  return open(**key, blob, ctx, facts);
}

Outcome<DataKey> DataPlane::datakey(const Peer& peer, const std::string& name, std::size_t length,
                                    const EncryptionContext& context, AuditFacts& facts) {
  const Bytes ctx = encode_context(context);
  if (auto noted = note_context(facts, ctx); !noted) return unexpected(noted.error());
  auto key = usable_key(peer, name, Operation::datakey, Algorithm::aes_256_gcm, facts);
  if (!key) return unexpected(key.error());
  if (length == 0 || length > kMaxDataKeyLength)
    return fail(Code::invalid_argument, "length must be 1.." + std::to_string(kMaxDataKeyLength));
  // The DEK comes from the token's RNG, the one the HSM vendor certifies.
  SecureBytes dek(length);
  facts.touched_key = true;
  if (auto r = vault_.random(dek); !r) return unexpected(r.error());
  auto sealed = seal(**key, ctx, dek, facts);
  if (!sealed) return unexpected(sealed.error());
  return DataKey{std::move(dek), std::move(sealed->ciphertext), sealed->version};
}

Outcome<Sealed> DataPlane::rewrap(const Peer& peer, const std::string& name, std::span<const std::uint8_t> blob,
                                  const EncryptionContext& context, AuditFacts& facts) {
  const Bytes ctx = encode_context(context);
  if (auto noted = note_context(facts, ctx); !noted) return unexpected(noted.error());
  auto key = usable_key(peer, name, Operation::rewrap, Algorithm::aes_256_gcm, facts);
  if (!key) return unexpected(key.error());
  auto opened = open(**key, blob, ctx, facts);
  if (!opened) return unexpected(opened.error());
  return seal(**key, ctx, opened->plaintext, facts);
}

Outcome<Secret> DataPlane::derive(const Peer& peer, const std::string& name, std::span<const std::uint8_t> info,
                                  std::size_t length, std::optional<std::uint32_t> version, AuditFacts& facts) {
  auto key = usable_key(peer, name, Operation::derive, Algorithm::hmac_sha256, facts);
  if (!key) return unexpected(key.error());
  if (info.size() > kMaxDeriveInfo) return fail(Code::invalid_argument, "info must be at most 1024 bytes");
  if (length == 0 || length > kMaxDeriveLength) return fail(Code::invalid_argument, "length must be 1..1024");
  const std::uint32_t wanted = version.value_or((*key)->current_version);
  facts.version = wanted;
  auto v = decryptable_version(**key, wanted);
  if (!v) return unexpected(v.error());
  const ObjectRef& object = (*v)->object;
  facts.touched_key = true;
  auto okm = hkdf_expand([&](std::span<const std::uint8_t> m) { return vault_.hmac_sha256(object, m); }, info, length);
  if (!okm) return unexpected(okm.error());
  return Secret{std::move(*okm), wanted};
}

}  // namespace custody::core
