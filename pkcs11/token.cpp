#include "pkcs11/token.h"

#include "pkcs11/token_quirks.h"

#include <vector>

#include "pkcs11/module.h"

namespace custody::p11 {

std::string TokenSelector::describe() const {
  std::string s;
  if (label) s += "label '" + *label + "'";
  if (serial) s += std::string(s.empty() ? "" : " and ") + "serial '" + *serial + "'";
  return s.empty() ? "any token" : s;
}

Result<TokenInfo> token_info(CK_FUNCTION_LIST* api, CK_SLOT_ID slot) {
  CK_TOKEN_INFO ti{};
  if (auto st = check(api->C_GetTokenInfo(slot, &ti), "C_GetTokenInfo"); !st)
    return unexpected(st.error());
  auto ver = [](CK_VERSION v) { return std::to_string(v.major) + "." + std::to_string(v.minor); };
  return TokenInfo{padded_field(ti.label, sizeof ti.label),
                   padded_field(ti.manufacturerID, sizeof ti.manufacturerID),
                   padded_field(ti.model, sizeof ti.model),
                   padded_field(ti.serialNumber, sizeof ti.serialNumber),
                   ver(ti.hardwareVersion),
                   ver(ti.firmwareVersion),
                   ti.flags};
}

Expected<CK_SLOT_ID, std::string> find_slot(CK_FUNCTION_LIST* api, const TokenSelector& selector,
                                            bool* inconclusive) {
  if (inconclusive) *inconclusive = false;
  const auto in_doubt = [inconclusive] {
    if (inconclusive) *inconclusive = true;
  };
  CK_ULONG count = 0;
  if (auto st = check(api->C_GetSlotList(CK_TRUE, nullptr, &count), "C_GetSlotList"); !st)
    return unexpected(st.error().describe());
  std::vector<CK_SLOT_ID> slots(count);
  if (auto st = check(api->C_GetSlotList(CK_TRUE, slots.data(), &count), "C_GetSlotList"); !st)
    return unexpected(st.error().describe());
  slots.resize(count);
  // A slot that cannot be read may be someone else's broken reader: look on, but say so if the
  // token is not found, since it may have been that one.
  std::string unreadable;
  for (CK_SLOT_ID slot : slots) {
    auto info = token_info(api, slot);
    if (!info) {
      unreadable += "; slot " + std::to_string(slot) + " could not be read: " + info.error().describe();
      in_doubt();
      continue;
    }
    // SoftHSMv2 shows a token whose store another process is writing as uninitialised and
    // without a label, like its ordinary free slot: on such a module a miss is never final.
    if (quirks::quirks_of(info->manufacturer, info->model).store_view_can_go_stale) in_doubt();
    if (selector.label && info->label != *selector.label) continue;
    if (selector.serial && info->serial != *selector.serial) continue;
    if (!(info->flags & CKF_TOKEN_INITIALIZED)) continue;
    return slot;
  }
  return unexpected("no initialized token with " + selector.describe() + " among " +
                    std::to_string(slots.size()) + " slot(s) with a token present" + unreadable);
}

}  // namespace custody::p11
