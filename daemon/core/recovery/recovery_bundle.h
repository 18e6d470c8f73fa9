#pragma once
// The recovery bundle (CONTRACT §11): B, a JSON document of the exact signed bytes, and the
// envelope {bundle: b64(B), signature, public_key, key_id} signed by the attestation key. Parsing
// is strict and bounded (a bundle comes from another site, through operators' hands): unknown or
// missing members, bad base64, gaps in versions and oversized fields are refused by name.
#include <boost/json/value.hpp>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/secure_buffer.h"
#include "daemon/core/error.h"
#include "daemon/core/keys/key.h"

namespace custody::core {

inline constexpr std::string_view kRecoveryBundleFormat = "custody.recovery-bundle.v1";
inline constexpr std::size_t kMaxBundleKeys = 1024;
inline constexpr std::size_t kMaxBundleVersions = 4096;  // per key

struct BundleSample {
  Bytes blob;          // aes-256-gcm: a CONTRACT §4 blob; hmac-sha256: the HKDF info
  std::string sha256;  // hex of the plaintext, or of the 32 bytes derived
};

struct BundleVersion {
  std::uint32_t version = 0;
  std::string state;   // enabled | destroyed
  std::string origin;  // as at the source
  std::int64_t created_at = 0;
  std::optional<Bytes> wrapped;  // absent for destroyed versions
  std::optional<BundleSample> sample;
};

struct BundleKey {
  std::string name;
  Algorithm algorithm = Algorithm::aes_256_gcm;
  KeyState state = KeyState::enabled;
  boost::json::value policy;  // as CONTRACT §2 writes it
  std::uint32_t current_version = 0;
  std::uint32_t min_decrypt_version = 1;
  std::vector<BundleVersion> versions;  // 1..current_version, in order
};

struct RecoveryBundle {
  std::string id;
  std::int64_t created_at = 0;
  std::string daemon_version, instance_id;
  std::string recovery_key_id;  // hex SHA-256 of the recovery public key's SPKI DER
  std::string mechanism;        // rsa-oaep-sha256 | rsa-oaep-sha1
  std::vector<std::string> approved_by;
  std::vector<BundleKey> keys;
};

// B, the exact bytes to sign.
std::string encode_bundle(const RecoveryBundle& bundle);
Outcome<RecoveryBundle> parse_bundle(std::string_view bytes);

struct BundleEnvelope {
  std::string bundle;  // B
  Bytes signature;     // DER ECDSA-P256-SHA256 over B
  std::string public_key_pem;
  std::string key_id;
};
boost::json::object envelope_to_json(const BundleEnvelope& envelope);
Outcome<BundleEnvelope> parse_envelope(const boost::json::value& json);

// Checks the envelope against the pinned attestation public key of the source daemon (PEM): the
// envelope's key must be that key, its key_id the key's, and the signature good over B. Only
// then is B parsed. Every failure is invalid_argument naming what does not hold.
Outcome<RecoveryBundle> verify_envelope(const BundleEnvelope& envelope, std::string_view pinned_public_key_pem);

}  // namespace custody::core
