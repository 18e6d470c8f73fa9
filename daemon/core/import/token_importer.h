#pragma once
// The token side of BYOK (CONTRACT §8). Key material is unwrapped inside the token only:
// CKM_RSA_AES_KEY_WRAP where the token has it, else composed from CKM_RSA_PKCS_OAEP (into an
// ephemeral, unwrap-only session AES key that is destroyed at once) and CKM_AES_KEY_WRAP_PAD
// into the final object with the fixed custody template.
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "daemon/core/keys/key_vault.h"
#include "pkcs11/session_pool.h"

namespace custody::core {

struct ImportMethod {
  std::string name;
  bool rsa = true;  // false: aes-kwp under a transport key
  unsigned rsa_bits = 0;
  CK_MECHANISM_TYPE oaep_hash = 0;
  CK_RSA_PKCS_MGF_TYPE oaep_mgf = 0;
};
const std::vector<ImportMethod>& import_methods();
const ImportMethod* find_import_method(const std::string& name);

class TokenImporter {
 public:
  explicit TokenImporter(p11::SessionPool& pool) : pool_(pool) {}

  // The methods this token can do; the OAEP hashes it accepts are found by trial, once.
  std::vector<std::string> offered_methods();
  // An RSA key pair for a job: private half sensitive, not extractable, unwrap only. Returns the
  // public key as PEM.
  Outcome<std::string> make_wrapping_pair(const ImportMethod& method, const ObjectRef& ref);
  Outcome<void> destroy_wrapping_pair(const ObjectRef& ref);
  // Every key-pair half (public or private) whose label starts with prefix.
  Outcome<std::vector<ObjectRef>> find_labelled_pairs(std::string_view prefix);
  Outcome<AttributeReport> wrapping_key_attributes(const ObjectRef& ref);

  // Unwraps the payload into target with the custody template of algorithm. Leaves nothing
  // behind on failure.
  Outcome<void> import_rsa(const ImportMethod& method, const ObjectRef& wrapping, std::span<const std::uint8_t> payload,
                           Algorithm algorithm, const ObjectRef& target);
  Outcome<void> import_kwp(const ObjectRef& transport, std::span<const std::uint8_t> payload, Algorithm algorithm,
                           const ObjectRef& target);
  // CONTRACT §8 KCV, computed in the token; nullopt for a transport key (unwrap only: no way to
  // compute one without relaxing an attribute, which custody never does).
  Outcome<std::optional<std::string>> kcv(Algorithm algorithm, const ObjectRef& target);
  Outcome<void> destroy(const ObjectRef& target);

 private:
  // SessionPool::run, with token errors mapped for the import API.
  template <class T, class Fn>
  Outcome<T> with_session(Fn&& fn);
  p11::SessionPool& pool_;
  std::mutex probe_mutex_;
  std::optional<std::vector<std::string>> offered_;
};

}  // namespace custody::core
