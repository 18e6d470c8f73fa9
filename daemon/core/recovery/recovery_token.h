#pragma once
// The daemon's side of recovery in the token (CONTRACT §11), in a user session like every other
// call: wrapping a recovery key's version under the trusted recovery public key, unwrapping a
// bundle's version with the recovery private key (into a custody key, or for a drill into a
// session object that is destroyed at once), and listing the trusted wrapping keys. The daemon
// never logs in as SO: the trusted key is put there by custodyctl recovery trust.
#include <optional>
#include <string>
#include <vector>

#include "daemon/core/keys/key_vault.h"
#include "daemon/core/recovery/recovery_bundle.h"
#include "pkcs11/session_pool.h"
#include "pkcs11/trusted_wrap.h"

namespace custody::core {

struct TrustedWrappingKey {
  std::optional<std::string> key_id;  // hex SHA-256 of the SPKI DER (RSA public keys)
  ObjectRef object;
  AttributeReport attributes;
};

class RecoveryToken {
 public:
  explicit RecoveryToken(p11::SessionPool& pool) : pool_(pool) {}

  // The OAEP hash the token's C_WrapKey takes with the trusted key of recovery_key_id (SHA-256
  // where it can). failed_precondition when the token holds no such trusted key.
  Outcome<p11::OaepHash> wrap_mechanism(const std::string& recovery_key_id);
  // C_WrapKey of the version's object. failed_precondition when the token refuses to let it out
  // (not a recovery key: CKA_EXTRACTABLE false, or the wrapping key is not trusted).
  Outcome<Bytes> wrap(const std::string& recovery_key_id, const p11::OaepHash& hash, const ObjectRef& key);
  // Whether the token holds the private key of recovery_key_id that can unwrap.
  Outcome<void> require_unwrapping_key(const std::string& recovery_key_id);
  // C_UnwrapKey into target with the custody template of algorithm (and the recovery attributes
  // when recovery), then the sample is checked on the new object; on any failure the object goes.
  Outcome<void> unwrap_into(const std::string& recovery_key_id, const p11::OaepHash& hash, const std::string& key_name,
                            Algorithm algorithm, const BundleVersion& version, const ObjectRef& target, bool recovery);
  // The drill: unwraps into a session object (CKA_TOKEN false), checks the sample, destroys it.
  // The value is empty when the sample matched, else why not; an error only for a token fault.
  Outcome<std::string> drill(const std::string& recovery_key_id, const p11::OaepHash& hash, const std::string& key_name,
                             Algorithm algorithm, const BundleVersion& version);
  // Every key the SO marked CKA_TRUSTED: where custody keys can be wrapped to.
  Outcome<std::vector<TrustedWrappingKey>> trusted_keys();

 private:
  p11::SessionPool& pool_;
};

}  // namespace custody::core
