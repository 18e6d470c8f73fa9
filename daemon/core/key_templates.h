#pragma once
// The fixed token templates for custody keys (DESIGN invariants 1 and 2) and the attribute checks
// made after creation and at start. Templates are never taken from a caller.
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "daemon/core/key.h"
#include "pkcs11/attributes.h"

namespace custody::core {

// Attribute names in the order the attestation report lists them, with their PKCS#11 types.
const std::vector<std::pair<std::string, CK_ATTRIBUTE_TYPE>>& reported_attributes();

// class, key type, storage and usage flags for a custody key of this algorithm. Key generation
// adds CKA_VALUE_LEN (32); the test-only route that creates a key from known bytes adds CKA_VALUE.
void fill_key_template(p11::AttributeTemplate& t, Algorithm algorithm, const ObjectRef& ref,
                       bool set_modifiable_false);
CK_MECHANISM_TYPE generation_mechanism(Algorithm algorithm);

// name → required value. always_sensitive and never_extractable are required for generated
// keys only: an imported key honestly reports false for them.
std::vector<std::pair<std::string, bool>> required_attributes(Algorithm algorithm, bool generated);

}  // namespace custody::core
