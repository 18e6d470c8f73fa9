#pragma once
// The fixed token templates for custody keys (DESIGN invariants 1 and 2) and the attribute checks
// made after creation and at start. Templates are never taken from a caller.
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "daemon/core/keys/key.h"
#include "pkcs11/attributes.h"
#include "pkcs11/error.h"
#include "pkcs11/token_quirks.h"

namespace custody::core {

// Attribute names in the order the attestation report lists them, with their PKCS#11 types.
const std::vector<std::pair<std::string, CK_ATTRIBUTE_TYPE>>& reported_attributes();

// class, key type, storage and usage flags for a custody key of this algorithm. Key generation
// adds CKA_VALUE_LEN (32); the test-only route that creates a key from known bytes adds CKA_VALUE.
// CKA_MODIFIABLE and CKA_COPYABLE false are optional: some tokens refuse them in a template.
// recovery: CKA_EXTRACTABLE true with CKA_WRAP_WITH_TRUSTED true (CONTRACT §11), nothing else differs.
void fill_key_template(p11::AttributeTemplate& t, Algorithm algorithm, const ObjectRef& ref,
                       bool set_modifiable_false, bool set_copyable_false = true, bool recovery = false);
CK_MECHANISM_TYPE generation_mechanism(Algorithm algorithm);

// Makes a custody key with create(template) (generate or unwrap): first with every optional
// restriction, then, while the token refuses the template for one of them
// (p11::quirks::refuses_optional_restriction), without the one or the other, then without both.
// The caller reads the attributes back afterwards (KeyVault::verify).
template <class Create>
p11::Result<CK_OBJECT_HANDLE> make_custody_key(Algorithm algorithm, const ObjectRef& ref, bool recovery, Create&& create) {
  constexpr std::pair<bool, bool> kAttempts[] = {{true, true}, {false, true}, {true, false}, {false, false}};
  p11::Result<CK_OBJECT_HANDLE> made = CK_INVALID_HANDLE;
  for (auto [not_modifiable, not_copyable] : kAttempts) {
    p11::AttributeTemplate t;
    fill_key_template(t, algorithm, ref, not_modifiable, not_copyable, recovery);
    made = create(t);
    if (made || !p11::quirks::refuses_optional_restriction(made.error().rv)) break;
  }
  return made;
}
template <class Create>
p11::Result<CK_OBJECT_HANDLE> make_custody_key(Algorithm algorithm, const ObjectRef& ref, Create&& create) {
  return make_custody_key(algorithm, ref, false, std::forward<Create>(create));
}

struct RequiredAttribute {
  std::string name;
  bool value;
  // Also met when the token does not report the attribute (CKA_COPYABLE before PKCS#11 2.40).
  bool unreported_is_fine = false;
};
// always_sensitive and never_extractable are required for generated keys only: an imported key
// honestly reports false for them. A recovery key must be extractable only under a trusted key
// (extractable and wrap_with_trusted true, never_extractable false).
std::vector<RequiredAttribute> required_attributes(Algorithm algorithm, bool generated, bool recovery = false);

}  // namespace custody::core
