#pragma once
// Token behaviour that departs from the PKCS#11 specification, kept in one place. Each entry says
// which token does it and how custody copes, so nothing else needs to know a vendor.
#include <string_view>

#include "pkcs11/pkcs11.h"

namespace custody::p11::quirks {

// What a token does differently, decided once from its CK_TOKEN_INFO when the pool starts.
struct TokenQuirks {
  // SoftHSMv2 (2.6.1 at least) answers a GCM tag mismatch in C_Decrypt, and an AES-KWP integrity
  // failure in C_UnwrapKey, with CKR_GENERAL_ERROR instead of CKR_ENCRYPTED_DATA_INVALID /
  // CKR_WRAPPED_KEY_INVALID. On any other token CKR_GENERAL_ERROR is what it says: a token failure.
  bool integrity_failure_is_general_error = false;
  // Some HSMs make the AES-GCM IV themselves. AWS CloudHSM ignores the caller's IV and writes its
  // own into CK_GCM_PARAMS.pIv; others (FIPS-mode firmware) refuse a caller IV with
  // CKR_MECHANISM_PARAM_INVALID and fill a zeroed pIv. No token says so in CK_TOKEN_INFO, so
  // custody learns it from the first refusal (TokenKeyVault::gcm_encrypt_fresh_iv) and always
  // reads the IV back from pIv after C_Encrypt. Only formats whose AAD does not hold the IV (XKS)
  // can take a token's IV; the CONTRACT §4 blob binds its IV in the AAD before encrypting.
  bool gcm_iv_from_token = false;
  // SoftHSMv2's file store gives each process its own view of the token, kept in step through a
  // shared generation counter, and several processes on one token (a fleet on one machine) can
  // leave a process's view missing objects that exist (its directory listing raced a write, or
  // its own write absorbed another's change) or marked invalid until the module starts again.
  // On such a token, an object not found starts the module again (at most every 5 s) and the
  // call is tried once more (SessionPool::run).
  bool store_view_can_go_stale = false;
};

inline TokenQuirks quirks_of(std::string_view manufacturer, std::string_view model) {
  TokenQuirks q;
  const bool softhsm2 = manufacturer == "SoftHSM project" && model.starts_with("SoftHSM v2");
  q.integrity_failure_is_general_error = softhsm2;
  q.store_view_can_go_stale = softhsm2;
  return q;
}

// The token refused the IV custody supplied in CK_GCM_PARAMS: it wants to make the IV itself.
inline bool refuses_caller_gcm_iv(CK_RV rv) { return rv == CKR_MECHANISM_PARAM_INVALID; }

// "This ciphertext does not authenticate (or has an impossible length)": the client's bytes are
// wrong, not the token. CKR_ENCRYPTED_DATA_* is the specification's answer.
inline bool is_authentication_failure(const TokenQuirks& q, CK_RV rv) {
  return rv == CKR_ENCRYPTED_DATA_INVALID || rv == CKR_ENCRYPTED_DATA_LEN_RANGE ||
         (q.integrity_failure_is_general_error && rv == CKR_GENERAL_ERROR);
}

// "This wrapped key does not unwrap": an authenticated unwrap (AES-KWP, RSA-OAEP) refused the bytes.
inline bool is_unwrap_integrity_failure(const TokenQuirks& q, CK_RV rv) {
  return rv == CKR_WRAPPED_KEY_INVALID || rv == CKR_WRAPPED_KEY_LEN_RANGE || rv == CKR_ENCRYPTED_DATA_INVALID ||
         rv == CKR_ENCRYPTED_DATA_LEN_RANGE || rv == CKR_DATA_LEN_RANGE ||
         (q.integrity_failure_is_general_error && rv == CKR_GENERAL_ERROR);
}

// Some tokens refuse an optional restriction in a key template: CKA_MODIFIABLE false
// (CKR_ATTRIBUTE_READ_ONLY or CKR_TEMPLATE_INCONSISTENT), CKA_COPYABLE false (tokens older than
// PKCS#11 2.40 do not know it: CKR_ATTRIBUTE_TYPE_INVALID). The answer does not say which one, so
// custody tries the template without each in turn, then reads back what the key got: a key the
// token reports copyable is refused, one whose token does not report CKA_COPYABLE at all is
// accepted (such a token has no way to mark a key uncopyable).
// SoftHSMv2 2.6.1 takes both in generate and unwrap templates, but applies a template in order
// and, in an unwrap, refuses any attribute that follows CKA_MODIFIABLE false with
// CKR_ATTRIBUTE_READ_ONLY: custody puts CKA_MODIFIABLE last. (Such a refused unwrap also leaves
// a half-made object in its store that other processes see, so the first template must pass.)
inline bool refuses_optional_restriction(CK_RV rv) {
  return rv == CKR_ATTRIBUTE_READ_ONLY || rv == CKR_TEMPLATE_INCONSISTENT || rv == CKR_ATTRIBUTE_TYPE_INVALID ||
         rv == CKR_ATTRIBUTE_VALUE_INVALID;
}

// Tokens without CKA_UNWRAP_TEMPLATE support refuse it in a key template; custody then makes the
// job key without it (the unwrap template is defence in depth, the E template is fixed anyway).
inline bool refuses_unwrap_template(CK_RV rv) {
  return rv == CKR_ATTRIBUTE_TYPE_INVALID || rv == CKR_TEMPLATE_INCONSISTENT || rv == CKR_ATTRIBUTE_VALUE_INVALID;
}

// A token shared by several processes may fail a call that races another process's write.
// SoftHSMv2's file store does: it truncates a file before taking its lock, so a process reading it
// at that moment marks its view of the token invalid (C_GetTokenInfo or C_Login answer
// CKR_GENERAL_ERROR, the label reads empty, a C_GenerateKeyPair fails with CKR_FUNCTION_FAILED and
// removes what it made) until its next read succeeds. Daemons starting together on one token meet
// this: opening the token and making the attestation key try again a few times before they are
// fatal (never after a wrong or locked PIN). Never used on the request path: there a failure is
// answered.
inline bool may_be_a_shared_store_race(CK_RV rv) { return rv == CKR_FUNCTION_FAILED || rv == CKR_GENERAL_ERROR; }
inline constexpr int kSharedStoreRaceAttempts = 5;

}  // namespace custody::p11::quirks
