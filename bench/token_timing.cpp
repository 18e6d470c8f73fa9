#include "bench/token_timing.h"

#include "pkcs11/token.h"

namespace custody::bench {

Expected<OpenToken, std::string> open_token(const std::string& module_path, const std::string& label,
                                            const std::string& pin) {
  OpenToken t;
  auto module = p11::Module::load(module_path, std::nullopt);
  if (!module) return unexpected(module.error());
  t.module = std::move(*module);
  auto slot = p11::find_slot(t.module->api(), p11::TokenSelector{label, std::nullopt});
  if (!slot) return unexpected(slot.error());
  t.slot = *slot;
  auto session = p11::Session::open(t.module->api(), t.slot);
  if (!session) return unexpected(session.error().describe());
  if (auto ok = session->login_user(pin); !ok) return unexpected(ok.error().describe());
  t.session.emplace(std::move(*session));
  return t;
}

Expected<CK_OBJECT_HANDLE, std::string> make_token_key(p11::Session& session, BenchKeyKind kind, const std::string& label) {
  const bool aes = kind == BenchKeyKind::aes_256_gcm;
  p11::AttributeTemplate t;
  t.add_ulong(CKA_CLASS, CKO_SECRET_KEY)
      .add_ulong(CKA_KEY_TYPE, aes ? CKK_AES : CKK_GENERIC_SECRET)
      .add_ulong(CKA_VALUE_LEN, 32)
      .add_string(CKA_LABEL, label)
      .add_bool(CKA_TOKEN, true)
      .add_bool(CKA_PRIVATE, true)
      .add_bool(CKA_SENSITIVE, true)
      .add_bool(CKA_EXTRACTABLE, false)
      .add_bool(CKA_ENCRYPT, aes)
      .add_bool(CKA_DECRYPT, aes)
      .add_bool(CKA_SIGN, !aes)
      .add_bool(CKA_VERIFY, !aes)
      .add_bool(CKA_WRAP, false)
      .add_bool(CKA_UNWRAP, false)
      .add_bool(CKA_DERIVE, false)
      .add_bool(CKA_COPYABLE, false)
      .add_bool(CKA_MODIFIABLE, false);  // last, as custody does (pkcs11/token_quirks.h)
  auto key = session.generate_key(aes ? CKM_AES_KEY_GEN : CKM_GENERIC_SECRET_KEY_GEN, t);
  if (!key) return unexpected(key.error().describe());
  return *key;
}

}  // namespace custody::bench
