#include "common/ecdsa_der.h"

#include <openssl/bn.h>
#include <openssl/ecdsa.h>

namespace custody {

Bytes ecdsa_raw_to_der(std::span<const std::uint8_t> raw) {
  const std::size_t half = raw.size() / 2;
  ECDSA_SIG* sig = ECDSA_SIG_new();
  ECDSA_SIG_set0(sig, BN_bin2bn(raw.data(), static_cast<int>(half), nullptr),
                 BN_bin2bn(raw.data() + half, static_cast<int>(half), nullptr));
  unsigned char* der = nullptr;
  int len = i2d_ECDSA_SIG(sig, &der);
  Bytes out(der, der + len);
  OPENSSL_free(der);
  ECDSA_SIG_free(sig);
  return out;
}

}  // namespace custody
