#pragma once
// Test-only keys with known bytes, created directly in the throwaway token with the custody
// template plus CKA_VALUE, so independent implementations can check what the token computed.
// Never a production code path: custodyd only generates or unwraps keys inside the token.
#include <openssl/rand.h>

#include <string>

#include "daemon/core/keys/key.h"
#include "daemon/core/keys/key_templates.h"
#include "tests/support/softhsm_token.h"

namespace custody::test {

inline core::ObjectRef make_known_key(core::Algorithm algorithm, const Bytes& value, const std::string& label) {
  core::ObjectRef ref;
  ref.id.resize(16);
  RAND_bytes(ref.id.data(), 16);
  ref.label = label;
  auto lease = SharedToken::get().pool().acquire();
  if (!lease) throw std::runtime_error(lease.error().describe());
  p11::AttributeTemplate t;
  core::fill_key_template(t, algorithm, ref, false);
  t.add_bytes(CKA_VALUE, value);
  auto h = lease->session().create_object(t);
  if (!h) throw std::runtime_error(h.error().describe());
  return ref;
}

}  // namespace custody::test
