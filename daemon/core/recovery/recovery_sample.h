#pragma once
// The sample of a key version in a recovery bundle (CONTRACT §11), which proves after a restore
// that the material is the same: for aes-256-gcm a §4 blob of 32 random bytes (empty context) and
// the SHA-256 of those bytes; for hmac-sha256 a random HKDF info and the SHA-256 of the 32 bytes
// HKDF-Expand derives from it (CONTRACT §5).
#include <string>

#include "daemon/core/keys/key_vault.h"
#include "daemon/core/recovery/recovery_bundle.h"
#include "pkcs11/session.h"
#include "pkcs11/token_quirks.h"

namespace custody::core {

// Made with the version's token object, through the vault.
Outcome<BundleSample> make_sample(KeyVault& vault, const std::string& key_name, Algorithm algorithm,
                                  const KeyVersion& version);
// The hex SHA-256 the sample gives with the object ref (through the vault), e.g. an existing key.
// invalid_ciphertext when the blob does not authenticate under it.
Outcome<std::string> sample_digest(KeyVault& vault, const std::string& key_name, std::uint32_t version,
                                   Algorithm algorithm, const ObjectRef& ref, const BundleSample& sample);
// The same with an object handle in a session (a freshly unwrapped object, a drill's session
// object). A GCM blob that does not authenticate gives an empty string: a mismatch, not a fault.
p11::Result<std::string> sample_digest(p11::Session& s, const p11::quirks::TokenQuirks& quirks, CK_OBJECT_HANDLE key,
                                       Algorithm algorithm, const std::string& key_name, std::uint32_t version,
                                       const BundleSample& sample);

}  // namespace custody::core
