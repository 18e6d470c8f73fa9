#include "bench/token_timing.h"

#include "daemon/core/keys/key_templates.h"
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
  // The template custody gives its own keys, so the direct rows time the same kind of object.
  const core::Algorithm algorithm = aes ? core::Algorithm::aes_256_gcm : core::Algorithm::hmac_sha256;
  const core::ObjectRef ref{Bytes(label.begin(), label.end()), label};
  auto key = core::make_custody_key(algorithm, ref, [&](p11::AttributeTemplate& t) {
    t.add_ulong(CKA_VALUE_LEN, 32);
    return session.generate_key(core::generation_mechanism(algorithm), t);
  });
  if (!key) return unexpected(key.error().describe());
  return *key;
}

}  // namespace custody::bench
