#include "daemon/core/operators.h"

#include <openssl/bio.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "common/hex.h"
#include "common/pem.h"

namespace custody::core {

Expected<OperatorSet, std::string> OperatorSet::from_pem(const std::vector<std::pair<std::string, std::string>>& list) {
  OperatorSet set;
  for (const auto& [name, pem] : list) {
    auto key = read_public_key_pem(pem);
    if (!key) return unexpected("operator '" + name + "': public_key is not a PEM public key (SubjectPublicKeyInfo)");
    EVP_PKEY* raw = key.get();
    if (EVP_PKEY_is_a(raw, "EC")) {
      char group[64] = {};
      std::size_t len = 0;
      EVP_PKEY_get_group_name(raw, group, sizeof group, &len);
      if (std::string(group) != "prime256v1")
        return unexpected("operator '" + name + "': EC keys must be P-256, not " + group);
    } else if (EVP_PKEY_is_a(raw, "RSA")) {
      if (EVP_PKEY_get_bits(raw) < 2048) return unexpected("operator '" + name + "': RSA keys must have at least 2048 bits");
    } else {
      return unexpected("operator '" + name + "': the key must be EC P-256 or RSA");
    }
    unsigned char* der = nullptr;
    int der_len = i2d_PUBKEY(raw, &der);
    std::string id = sha256_hex(std::span(der, static_cast<std::size_t>(der_len)));
    OPENSSL_free(der);
    for (const auto& other : set.operators_) {
      if (other.name == name) return unexpected("operator '" + name + "' is listed twice");
      if (other.key_id == id) return unexpected("operators '" + other.name + "' and '" + name + "' share a key");
    }
    set.operators_.push_back(Operator{name, std::move(key), std::move(id)});
  }
  return set;
}

const Operator* OperatorSet::find(std::string_view name) const {
  for (const auto& op : operators_)
    if (op.name == name) return &op;
  return nullptr;
}

Outcome<void> OperatorSet::verify(const Operator& op, std::string_view challenge, std::span<const std::uint8_t> signature) {
  const bool rsa = EVP_PKEY_is_a(op.key.get(), "RSA");
  if (rsa) {
    if (signature.size() != static_cast<std::size_t>(EVP_PKEY_get_size(op.key.get())))
      return fail(Code::invalid_argument, "an RSA-PSS signature must be as long as the operator's modulus");
  } else {
    const unsigned char* p = signature.data();
    ECDSA_SIG* sig = d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(signature.size()));
    const bool whole = sig && p == signature.data() + signature.size();
    ECDSA_SIG_free(sig);
    if (!whole) return fail(Code::invalid_argument, "the signature is not a DER ECDSA signature");
  }
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  EVP_PKEY_CTX* pctx = nullptr;
  int ok = EVP_DigestVerifyInit(ctx, &pctx, EVP_sha256(), nullptr, op.key.get());
  if (ok == 1 && rsa) {
    ok = EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) == 1 &&
         EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, EVP_sha256()) == 1 &&
         EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_AUTO) == 1;
  }
  if (ok == 1)
    ok = EVP_DigestVerify(ctx, signature.data(), signature.size(), reinterpret_cast<const unsigned char*>(challenge.data()),
                          challenge.size());
  EVP_MD_CTX_free(ctx);
  if (ok != 1)
    return fail(Code::permission_denied, "the signature of operator '" + op.name + "' does not verify over this request's challenge");
  return {};
}

}  // namespace custody::core
