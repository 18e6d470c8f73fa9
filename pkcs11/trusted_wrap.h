#pragma once
// The token calls of backup without plaintext (CONTRACT §11): RSA-OAEP C_WrapKey of a key under a
// wrapping key the token's Security Officer marked CKA_TRUSTED, C_UnwrapKey with the recovery
// private key, and the two ceremony steps run by custodyctl (never the daemon): making the
// recovery key pair in the recovery token, and the SO's import of its public half as trusted.
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/secure_buffer.h"
#include "pkcs11/session.h"

namespace custody::p11 {

// RSA-OAEP with MGF1 over the same hash and no label.
struct OaepHash {
  CK_MECHANISM_TYPE hash;
  CK_RSA_PKCS_MGF_TYPE mgf;
  const char* name;  // as CONTRACT §11 names the mechanism
};
inline constexpr OaepHash kOaepSha256{CKM_SHA256, CKG_MGF1_SHA256, "rsa-oaep-sha256"};
inline constexpr OaepHash kOaepSha1{CKM_SHA_1, CKG_MGF1_SHA1, "rsa-oaep-sha1"};
const OaepHash* find_oaep_hash(std::string_view name);

// Recovery key pairs are RSA of at least this size.
inline constexpr unsigned kMinRecoveryKeyBits = 3072;

struct RsaPublicKey {
  Bytes modulus;
  Bytes exponent;
};

// C_WrapKey(CKM_RSA_PKCS_OAEP) of key under wrapping; two-call sizing.
Result<Bytes> wrap_key_oaep(Session& s, const OaepHash& hash, CK_OBJECT_HANDLE wrapping, CK_OBJECT_HANDLE key);

// Which OAEP hash the token's C_WrapKey takes with this wrapping key, SHA-256 first: it wraps a
// throwaway extractable session AES key (destroyed afterwards). Fault::not_found when neither.
Result<OaepHash> probe_oaep_wrap(Session& s, CK_OBJECT_HANDLE wrapping);

// Every public or secret key in the token with CKA_TRUSTED true: where keys can go.
Result<std::vector<CK_OBJECT_HANDLE>> find_trusted_keys(Session& s);
// The one trusted public key with this CKA_ID (Fault::not_found / not_unique otherwise).
Result<CK_OBJECT_HANDLE> find_trusted_public_key(Session& s, std::span<const std::uint8_t> id);
// The one private key with this CKA_ID that can unwrap.
Result<CK_OBJECT_HANDLE> find_unwrapping_private_key(Session& s, std::span<const std::uint8_t> id);

Result<RsaPublicKey> read_rsa_public_key(Session& s, CK_OBJECT_HANDLE key);

// Recovery token (DR side): an RSA pair whose private half is sensitive, never extractable and
// can only unwrap; the public half can do nothing in this token (it is given to the primary).
Result<std::pair<CK_OBJECT_HANDLE, CK_OBJECT_HANDLE>> generate_recovery_pair(Session& s, unsigned bits,
                                                                              std::span<const std::uint8_t> id,
                                                                              const std::string& label);

// C_SetAttributeValue(CKA_ID): the pair's id is the digest of its public key, known only once made.
Status set_object_id(Session& s, CK_OBJECT_HANDLE object, std::span<const std::uint8_t> id);

// C_Login as the Security Officer (a session of custodyctl recovery trust; never the daemon's).
Status login_so(Session& s, std::string_view so_pin);
// In an SO session: the recovery public key as a token object with CKA_TRUSTED and CKA_WRAP
// true and every other usage false. Only the SO can set CKA_TRUSTED.
Result<CK_OBJECT_HANDLE> import_trusted_public_key(Session& so, const RsaPublicKey& key, std::span<const std::uint8_t> id,
                                                   const std::string& label);

}  // namespace custody::p11
