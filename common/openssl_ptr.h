#pragma once
// Owning pointers for OpenSSL objects, in one place: every object is freed on every path (early
// returns included), and no file spells out its own deleter. A null pointer is a failed call.
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/params.h>
#include <openssl/x509.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>

namespace custody::ossl {

template <class T, void (*Free)(T*)>
struct Deleter {
  void operator()(T* p) const noexcept { Free(p); }
};

using PKey = std::unique_ptr<EVP_PKEY, Deleter<EVP_PKEY, EVP_PKEY_free>>;
using PKeyCtx = std::unique_ptr<EVP_PKEY_CTX, Deleter<EVP_PKEY_CTX, EVP_PKEY_CTX_free>>;
using MdCtx = std::unique_ptr<EVP_MD_CTX, Deleter<EVP_MD_CTX, EVP_MD_CTX_free>>;
using CipherCtx = std::unique_ptr<EVP_CIPHER_CTX, Deleter<EVP_CIPHER_CTX, EVP_CIPHER_CTX_free>>;
using Bio = std::unique_ptr<BIO, Deleter<BIO, BIO_free_all>>;
using X509Ptr = std::unique_ptr<X509, Deleter<X509, X509_free>>;
using BigNum = std::unique_ptr<BIGNUM, Deleter<BIGNUM, BN_free>>;
using EcdsaSig = std::unique_ptr<ECDSA_SIG, Deleter<ECDSA_SIG, ECDSA_SIG_free>>;
using ParamBuilder = std::unique_ptr<OSSL_PARAM_BLD, Deleter<OSSL_PARAM_BLD, OSSL_PARAM_BLD_free>>;
using Params = std::unique_ptr<OSSL_PARAM, Deleter<OSSL_PARAM, OSSL_PARAM_free>>;

// Memory OpenSSL allocated for a caller (i2d_*, BN_bn2hex...): OPENSSL_free is a macro.
struct OpenSslFree {
  void operator()(void* p) const noexcept { CRYPTO_free(p, __FILE__, __LINE__); }
};
using Buffer = std::unique_ptr<unsigned char, OpenSslFree>;

// The DER an i2d_* function writes, owned, with its length; empty when the encoding failed
// (OpenSSL returns a length ≤ 0 then, which must never become a size).
struct Der {
  Buffer data;
  std::size_t size = 0;
  explicit operator bool() const { return data && size > 0; }
  std::span<const std::uint8_t> bytes() const { return {data.get(), size}; }
};

template <class T, class Encode>
Der encode_der(const T* object, Encode i2d) {
  unsigned char* out = nullptr;
  const int len = i2d(object, &out);
  Der der{Buffer(out), 0};
  if (len <= 0 || !out) return Der{};
  der.size = static_cast<std::size_t>(len);
  return der;
}

}  // namespace custody::ossl
