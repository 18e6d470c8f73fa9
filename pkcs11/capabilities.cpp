#include "pkcs11/capabilities.h"

#include <vector>

namespace custody::p11 {

Result<Capabilities> Capabilities::probe(CK_FUNCTION_LIST* api, CK_SLOT_ID slot) {
  CK_ULONG count = 0;
  if (auto st = check(api->C_GetMechanismList(slot, nullptr, &count), "C_GetMechanismList"); !st)
    return unexpected(st.error());
  std::vector<CK_MECHANISM_TYPE> list(count);
  if (auto st = check(api->C_GetMechanismList(slot, list.data(), &count), "C_GetMechanismList"); !st)
    return unexpected(st.error());
  list.resize(count);
  Capabilities caps;
  for (CK_MECHANISM_TYPE m : list) {
    CK_MECHANISM_INFO info{};
    const CK_RV rv = api->C_GetMechanismInfo(slot, m, &info);
    // A listed mechanism the token then calls invalid is left out; any other failure is the
    // token's, and must not read as "this token cannot do that".
    if (rv == CKR_MECHANISM_INVALID) continue;
    if (auto st = check(rv, "C_GetMechanismInfo"); !st) return unexpected(st.error());
    caps.mechanisms_[m] = info;
  }
  return caps;
}

bool Capabilities::supports(CK_MECHANISM_TYPE mechanism, CK_FLAGS flags) const {
  auto it = mechanisms_.find(mechanism);
  return it != mechanisms_.end() && (it->second.flags & flags) == flags;
}

bool Capabilities::aes_gcm() const {
  auto gen = mechanisms_.find(CKM_AES_KEY_GEN);
  return gen != mechanisms_.end() && gen->second.ulMaxKeySize >= 32 &&
         supports(CKM_AES_GCM, CKF_ENCRYPT | CKF_DECRYPT);
}

bool Capabilities::hmac_sha256() const {
  return supports(CKM_GENERIC_SECRET_KEY_GEN, CKF_GENERATE) && supports(CKM_SHA256_HMAC, CKF_SIGN);
}

}  // namespace custody::p11
