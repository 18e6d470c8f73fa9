#pragma once
// What custody asks of the token for its keys. The only implementation talks PKCS#11
// (TokenKeyVault); the interface keeps the core logic testable and the token swappable.
#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "common/secure_buffer.h"
#include "daemon/core/error.h"
#include "daemon/core/keys/key.h"
#include "daemon/core/keys/token_inventory.h"

namespace custody::core {

// Attribute name (as in the attestation report) → value; nullopt when the token does not say.
using AttributeReport = std::map<std::string, std::optional<bool>>;

class KeyVault {
 public:
  virtual ~KeyVault() = default;
  // Generates a key with the fixed custody template for the algorithm, reads the attributes
  // back and refuses (destroying it) a key that does not match.
  // recovery: the CONTRACT §11 template (extractable only under a trusted key).
  virtual Outcome<void> generate(Algorithm algorithm, const ObjectRef& ref, bool recovery = false) = 0;
  virtual Outcome<SecureBytes> gcm_encrypt(const ObjectRef& key, std::span<const std::uint8_t> iv,
                                           std::span<const std::uint8_t> aad,
                                           std::span<const std::uint8_t> plaintext) = 0;
  virtual Outcome<SecureBytes> gcm_decrypt(const ObjectRef& key, std::span<const std::uint8_t> iv,
                                           std::span<const std::uint8_t> aad,
                                           std::span<const std::uint8_t> ciphertext_and_tag) = 0;
  virtual Outcome<SecureBytes> hmac_sha256(const ObjectRef& key, std::span<const std::uint8_t> message) = 0;
  virtual Outcome<void> random(std::span<std::uint8_t> out) = 0;
  virtual Outcome<AttributeReport> attributes(const ObjectRef& key) = 0;
  // Checks the attributes against the custody template; the message lists what differs.
  virtual Outcome<void> verify(Algorithm algorithm, const ObjectRef& key, bool generated, bool recovery = false) = 0;
  // Destroys the object and every copy of it: each object carrying its CKA_ID or its label
  // (cryptographic shredding). Fails if any is still there afterwards. Nothing there is success.
  virtual Outcome<void> destroy(const ObjectRef& key) = 0;
  // Whether the object exists; an error if more than one object carries its CKA_ID or label.
  virtual Outcome<bool> exists(const ObjectRef& key) = 0;
  // How many token objects carry its CKA_ID or label (custody made one).
  virtual Outcome<std::size_t> carriers(const ObjectRef& key) = 0;
  // Every object in the token, read in one pass, for reconciliation; also remembers the handle of
  // each secret key whose CKA_ID no other secret key carries, so that the checks that follow
  // need no search of the token.
  virtual Outcome<TokenInventory> inventory() = 0;
  virtual bool available() const = 0;
  virtual std::string unavailable_reason() const = 0;
  virtual std::uint64_t operations() const = 0;  // token calls made, for metrics
};

}  // namespace custody::core
