#include "common/ecdsa_der.h"

#include <openssl/bn.h>
#include <openssl/ecdsa.h>

#include "common/openssl_ptr.h"

namespace custody {

Expected<Bytes, std::string> ecdsa_signature_der(std::span<const std::uint8_t> raw) {
  const std::size_t half = raw.size() / 2;
  if (raw.empty() || raw.size() % 2 != 0 || half > 66)
    return unexpected("an ECDSA signature r || s of " + std::to_string(raw.size()) + " bytes");
  ossl::BigNum r(BN_bin2bn(raw.data(), static_cast<int>(half), nullptr));
  ossl::BigNum s(BN_bin2bn(raw.data() + half, static_cast<int>(half), nullptr));
  ossl::EcdsaSig sig(ECDSA_SIG_new());
  if (!r || !s || !sig) return unexpected(std::string("OpenSSL cannot allocate an ECDSA signature"));
  if (ECDSA_SIG_set0(sig.get(), r.get(), s.get()) != 1) return unexpected(std::string("OpenSSL refused the signature's r and s"));
  (void)r.release();  // owned by sig now
  (void)s.release();
  const ossl::Der der = ossl::encode_der(sig.get(), i2d_ECDSA_SIG);
  if (!der) return unexpected(std::string("OpenSSL cannot encode the ECDSA signature"));
  return Bytes(der.bytes().begin(), der.bytes().end());
}

}  // namespace custody
