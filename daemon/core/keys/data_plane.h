#pragma once
// The data-plane operations of CONTRACT §3: wrap, unwrap, datakey, rewrap, derive. Each checks
// the key (exists, algorithm, state, version), the caller's policy, then runs in the token.
#include <atomic>
#include <cstdint>
#include <optional>
#include <span>
#include <string>

#include "daemon/core/crypto/encryption_context.h"
#include "daemon/core/keys/key_registry.h"
#include "daemon/core/keys/key_vault.h"
#include "daemon/core/keys/usage_meter.h"

namespace custody::core {

// What an operation learnt that belongs in its audit record, filled in as far as it got.
struct AuditFacts {
  std::optional<std::string> key;
  std::optional<std::uint32_t> version;
  std::optional<std::string> context_sha256;
  // False when the key named does not exist. The caller hears "permission denied" either way (the
  // service socket does not tell who may not use a key whether it exists); the audit keeps this.
  bool key_exists = true;
  // A token operation ran with the key (whatever its result): the item keeps its own audit
  // record even inside a batch, where refusals before this point are summarised.
  bool touched_key = false;
};

struct Sealed {
  Bytes ciphertext;
  std::uint32_t version = 0;
};
struct Secret {
  SecureBytes plaintext;
  std::uint32_t version = 0;
};
struct DataKey {
  SecureBytes plaintext;
  Bytes ciphertext;
  std::uint32_t version = 0;
};

inline constexpr std::size_t kMaxWrapPlaintext = 8192;
inline constexpr std::size_t kMaxDataKeyLength = 64;
inline constexpr std::size_t kMaxDeriveInfo = 1024;
inline constexpr std::size_t kMaxDeriveLength = 1024;

class DataPlane {
 public:
  // meter may be null (no usage counting, as in tests of the cryptography alone).
  DataPlane(KeyRegistry& registry, KeyVault& vault, UsageMeter* meter = nullptr)
      : registry_(registry), vault_(vault), meter_(meter) {}

  Outcome<Sealed> wrap(const Peer& peer, const std::string& name, std::span<const std::uint8_t> plaintext,
                       const EncryptionContext& context, AuditFacts& facts);
  Outcome<Secret> unwrap(const Peer& peer, const std::string& name, std::span<const std::uint8_t> blob,
                         const EncryptionContext& context, AuditFacts& facts);
  Outcome<DataKey> datakey(const Peer& peer, const std::string& name, std::size_t length,
                           const EncryptionContext& context, AuditFacts& facts);
  Outcome<Sealed> rewrap(const Peer& peer, const std::string& name, std::span<const std::uint8_t> blob,
                         const EncryptionContext& context, AuditFacts& facts);
  Outcome<Secret> derive(const Peer& peer, const std::string& name, std::span<const std::uint8_t> info,
                         std::size_t length, std::optional<std::uint32_t> version, AuditFacts& facts);

  // Attempts to use a key scheduled for destruction: someone still depends on it.
  std::uint64_t pending_destruction_uses() const { return pending_destruction_uses_.load(); }

 private:
  Outcome<std::shared_ptr<const Key>> usable_key(const Peer& peer, const std::string& name, Operation op,
                                                 Algorithm algorithm, AuditFacts& facts);
  Outcome<const KeyVersion*> decryptable_version(const Key& key, std::uint32_t version);
  Outcome<Sealed> seal(const Key& key, const Bytes& ctx, std::span<const std::uint8_t> plaintext, AuditFacts& facts);
  Outcome<Secret> open(const Key& key, std::span<const std::uint8_t> blob, const Bytes& ctx, AuditFacts& facts);

  KeyRegistry& registry_;
  KeyVault& vault_;
  UsageMeter* meter_;
  std::atomic<std::uint64_t> pending_destruction_uses_{0};
};

}  // namespace custody::core
