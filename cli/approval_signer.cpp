#include "cli/approval_signer.h"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include <cstring>

#include "common/ecdsa_der.h"
#include "common/hex.h"
#include "common/openssl_ptr.h"
#include "pkcs11/module.h"
#include "pkcs11/session.h"
#include "pkcs11/token.h"

namespace custody::client {

Expected<Bytes, std::string> sign_with_key_file(const std::string& pem_path, const std::string& challenge) {
  ossl::Bio file(BIO_new_file(pem_path.c_str(), "r"));
  if (!file) return unexpected("cannot read key file " + pem_path);
  // Owned from here on: freed (and its memory cleansed by OpenSSL) on every return.
  ossl::PKey key(PEM_read_bio_PrivateKey(file.get(), nullptr, nullptr, nullptr));
  if (!key) return unexpected(pem_path + " is not a PEM private key");
  ossl::MdCtx ctx(EVP_MD_CTX_new());
  if (!ctx) return unexpected(std::string("OpenSSL cannot allocate a digest context"));
  EVP_PKEY_CTX* pctx = nullptr;  // owned by ctx
  if (EVP_DigestSignInit(ctx.get(), &pctx, EVP_sha256(), nullptr, key.get()) != 1)
    return unexpected("signing with " + pem_path + " failed");
  if (EVP_PKEY_is_a(key.get(), "RSA") &&
      (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) != 1 || EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, EVP_sha256()) != 1 ||
       EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, 32) != 1))
    return unexpected("cannot set up RSA-PSS with " + pem_path);
  std::size_t len = 0;
  const auto* msg = reinterpret_cast<const unsigned char*>(challenge.data());
  if (EVP_DigestSign(ctx.get(), nullptr, &len, msg, challenge.size()) != 1 || len == 0)
    return unexpected("signing with " + pem_path + " failed");
  Bytes sig(len);
  if (EVP_DigestSign(ctx.get(), sig.data(), &len, msg, challenge.size()) != 1 || len == 0 || len > sig.size())
    return unexpected("signing with " + pem_path + " failed");
  sig.resize(len);
  return sig;
}

Expected<Bytes, std::string> sign_with_token(const TokenKey& key, const std::string& challenge) {
  auto module = p11::Module::load(key.module, std::nullopt);
  if (!module) return unexpected(module.error());
  auto* api = (*module)->api();
  auto slot = p11::find_slot(api, p11::TokenSelector{key.token_label, key.token_serial});
  if (!slot) return unexpected(slot.error());
  auto session = p11::Session::open(api, *slot);
  if (!session) return unexpected(session.error().describe());
  if (auto ok = session->login_user(std::string_view(key.pin.data(), key.pin.size())); !ok)
    return unexpected(ok.error().rv == CKR_PIN_INCORRECT ? std::string("the PIN is wrong") : ok.error().describe());
  p11::AttributeTemplate find;
  find.add_ulong(CKA_CLASS, CKO_PRIVATE_KEY).add_string(CKA_LABEL, key.key_label);
  auto found = session->find_objects(find, 2);
  if (!found) return unexpected(found.error().describe());
  if (found->size() != 1)
    return unexpected("expected one private key labelled '" + key.key_label + "' on the token, found " +
                      std::to_string(found->size()));
  auto type = session->get_bytes((*found)[0], CKA_KEY_TYPE);
  if (!type || !*type || (*type)->size() != sizeof(CK_KEY_TYPE)) return unexpected(std::string("cannot read the key type"));
  CK_KEY_TYPE key_type = 0;
  std::memcpy(&key_type, (*type)->data(), sizeof key_type);
  // Sign the digest: works on tokens without CKM_ECDSA_SHA256 / CKM_SHA256_RSA_PKCS_PSS too.
  auto hashed = sha256(to_bytes(challenge));
  if (!hashed) return unexpected("cannot hash the challenge: " + hashed.error());
  const Bytes& digest = *hashed;
  if (key_type == CKK_EC) {
    CK_MECHANISM mech{CKM_ECDSA, nullptr, 0};
    auto raw = session->sign(mech, (*found)[0], digest, 64);
    if (!raw) return unexpected(raw.error().describe());
    return ecdsa_signature_der(*raw);
  }
  if (key_type == CKK_RSA) {
    CK_RSA_PKCS_PSS_PARAMS params{CKM_SHA256, CKG_MGF1_SHA256, 32};
    CK_MECHANISM mech{CKM_RSA_PKCS_PSS, &params, sizeof params};
    auto sig = session->sign(mech, (*found)[0], digest, 512);
    if (!sig) return unexpected(sig.error().describe());
    return Bytes(sig->begin(), sig->end());
  }
  return unexpected(std::string("the approval key must be EC P-256 or RSA"));
}

}  // namespace custody::client
