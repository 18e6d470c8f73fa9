#pragma once
// Published test vectors from Debian's python3-cryptography-vectors (NIST CAVP, RFC 5869).
#include <string>
#include <vector>

#include "common/secure_buffer.h"

namespace custody::test {

struct GcmVector {
  Bytes key, iv, plaintext, aad, ciphertext, tag;
};
// gcmEncryptExtIV256.rsp entries with a 96-bit IV and a 128-bit tag.
std::vector<GcmVector> nist_gcm256_vectors();

struct HkdfVector {
  Bytes prk, info, okm;
};
// RFC 5869 Appendix A, SHA-256 cases.
std::vector<HkdfVector> rfc5869_sha256_vectors();

}  // namespace custody::test
