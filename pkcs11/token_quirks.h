#pragma once
// Token behaviour that departs from the PKCS#11 specification, kept in one place. Each entry says
// which token does it and how custody copes, so nothing else needs to know a vendor.
#include "pkcs11/pkcs11.h"

namespace custody::p11::quirks {

// SoftHSMv2 2.6.1 answers a GCM tag mismatch with CKR_GENERAL_ERROR instead of
// CKR_ENCRYPTED_DATA_INVALID; both mean "this ciphertext does not authenticate".
inline bool is_authentication_failure(CK_RV rv) {
  return rv == CKR_ENCRYPTED_DATA_INVALID || rv == CKR_ENCRYPTED_DATA_LEN_RANGE || rv == CKR_GENERAL_ERROR;
}

// Some tokens refuse CKA_MODIFIABLE in a key template (CKR_ATTRIBUTE_READ_ONLY, or
// CKR_TEMPLATE_INCONSISTENT); custody then creates the key without it and reports the real value.
inline bool refuses_modifiable_attribute(CK_RV rv) {
  return rv == CKR_ATTRIBUTE_READ_ONLY || rv == CKR_TEMPLATE_INCONSISTENT || rv == CKR_ATTRIBUTE_TYPE_INVALID;
}

// SoftHSMv2 refuses CKA_TOKEN in a C_CopyObject template (CKR_ATTRIBUTE_READ_ONLY), so it cannot
// make a session copy of a token key; custody then runs the one-block KCV computation on the key
// itself, which its encrypt permission already allows.
inline bool refuses_session_copy(CK_RV rv) {
  return rv == CKR_ATTRIBUTE_READ_ONLY || rv == CKR_TEMPLATE_INCONSISTENT || rv == CKR_ACTION_PROHIBITED;
}

// Tokens without CKA_UNWRAP_TEMPLATE support refuse it in a key template; custody then makes the
// job key without it (the unwrap template is defence in depth, the E template is fixed anyway).
inline bool refuses_unwrap_template(CK_RV rv) {
  return rv == CKR_ATTRIBUTE_TYPE_INVALID || rv == CKR_TEMPLATE_INCONSISTENT || rv == CKR_ATTRIBUTE_VALUE_INVALID;
}

}  // namespace custody::p11::quirks
