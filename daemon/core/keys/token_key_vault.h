#pragma once
// KeyVault over a PKCS#11 session pool. Object handles are cached by CKA_ID and dropped when the
// pool resets the module (its generation changes) or the token says a handle is stale.
#include <atomic>
#include <mutex>
#include <string>
#include <unordered_map>

#include "daemon/core/keys/key_vault.h"
#include "pkcs11/session_pool.h"

namespace custody::core {

// The objects of one class whose CKA_LABEL starts with prefix.
p11::Result<std::vector<ObjectRef>> find_labelled_objects(p11::Session& s, CK_OBJECT_CLASS object_class,
                                                          std::string_view prefix);

// Every token object, of any class, whose CKA_ID is ref.id or whose CKA_LABEL is ref.label: the
// object custody made and any copy of it (C_CopyObject, or a C_CreateObject by anyone with the
// PIN). Crypto-shredding has to reach all of them.
p11::Result<std::vector<CK_OBJECT_HANDLE>> find_carriers(p11::Session& s, const ObjectRef& ref);

// Destroys every carrier of ref and looks again: how many are still there (0: shredded), and the
// first C_DestroyObject failure, if any, for the message.
struct Shredding {
  std::size_t remaining = 0;
  std::optional<p11::P11Error> failure;
};
p11::Result<Shredding> destroy_carriers(p11::Session& s, const ObjectRef& ref);

class TokenKeyVault final : public KeyVault {
 public:
  explicit TokenKeyVault(p11::SessionPool& pool);

  Outcome<void> generate(Algorithm algorithm, const ObjectRef& ref, bool recovery = false) override;
  Outcome<SecureBytes> gcm_encrypt(const ObjectRef& key, std::span<const std::uint8_t> iv,
                                   std::span<const std::uint8_t> aad,
                                   std::span<const std::uint8_t> plaintext) override;
  Outcome<SecureBytes> gcm_decrypt(const ObjectRef& key, std::span<const std::uint8_t> iv,
                                   std::span<const std::uint8_t> aad,
                                   std::span<const std::uint8_t> ciphertext_and_tag) override;
  Outcome<SecureBytes> hmac_sha256(const ObjectRef& key, std::span<const std::uint8_t> message) override;
  // AES-GCM encryption under a fresh 12-byte IV made wherever the token wants it made (quirks:
  // gcm_iv_from_token): by custody from the token's generator, or by the token itself, read back
  // from CK_GCM_PARAMS.pIv. Only for formats whose AAD does not hold the IV (XKS).
  struct FreshIvSealed {
    Bytes iv;
    SecureBytes ciphertext_and_tag;
  };
  Outcome<FreshIvSealed> gcm_encrypt_fresh_iv(const ObjectRef& key, std::span<const std::uint8_t> aad,
                                              std::span<const std::uint8_t> plaintext);
  Outcome<void> random(std::span<std::uint8_t> out) override;
  Outcome<AttributeReport> attributes(const ObjectRef& key) override;
  Outcome<void> verify(Algorithm algorithm, const ObjectRef& key, bool generated, bool recovery = false) override;
  Outcome<void> destroy(const ObjectRef& key) override;
  Outcome<bool> exists(const ObjectRef& key) override;
  Outcome<std::size_t> carriers(const ObjectRef& key) override;
  Outcome<TokenInventory> inventory() override;
  bool available() const override;
  std::string unavailable_reason() const override;
  std::uint64_t operations() const override { return operations_.load(std::memory_order_relaxed); }

 private:
  // SessionPool::run, counting token calls and dropping cached handles after a session error.
  template <class T, class Fn>
  p11::Result<T> with_session(Fn&& fn);
  p11::Result<CK_OBJECT_HANDLE> resolve(p11::Session& s, const ObjectRef& ref);
  // CKM_AES_GCM with a 128-bit tag; input is the plaintext, or ciphertext || tag.
  p11::Result<SecureBytes> gcm(const ObjectRef& key, std::span<const std::uint8_t> iv,
                               std::span<const std::uint8_t> aad, std::span<const std::uint8_t> input, bool encrypt);
  void forget(const ObjectRef& ref);
  p11::Result<AttributeReport> read_attributes(p11::Session& s, CK_OBJECT_HANDLE h);

  p11::SessionPool& pool_;
  std::mutex cache_mutex_;
  std::unordered_map<std::string, CK_OBJECT_HANDLE> handles_;
  std::uint64_t cache_generation_ = 0;
  std::atomic<std::uint64_t> operations_{0};
  std::atomic<bool> token_makes_gcm_iv_{false};  // learned: the token refused an IV custody supplied
};

// What a failed token call means for the client; the CK_RV itself goes to the log only.
Error token_error(const p11::P11Error& e, const char* what);

}  // namespace custody::core
