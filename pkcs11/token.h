#pragma once
#include <optional>
#include <string>

#include "pkcs11/error.h"

namespace custody::p11 {

struct TokenSelector {
  std::optional<std::string> label;
  std::optional<std::string> serial;
  std::string describe() const;
};

struct TokenInfo {
  std::string label, manufacturer, model, serial, hardware_version, firmware_version;
  CK_FLAGS flags = 0;
};

// The slot whose present token matches the selector; an error names what was looked for.
// inconclusive (if given) says whether a miss is worth another search: some slot could not be
// read, or the module's view of its store can go stale (TokenQuirks::store_view_can_go_stale),
// so a token another process is writing may not show as itself for a moment. On other modules
// a wrong label is final.
Expected<CK_SLOT_ID, std::string> find_slot(CK_FUNCTION_LIST* api, const TokenSelector& selector,
                                            bool* inconclusive = nullptr);
Result<TokenInfo> token_info(CK_FUNCTION_LIST* api, CK_SLOT_ID slot);

}  // namespace custody::p11
