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
Expected<CK_SLOT_ID, std::string> find_slot(CK_FUNCTION_LIST* api, const TokenSelector& selector);
Result<TokenInfo> token_info(CK_FUNCTION_LIST* api, CK_SLOT_ID slot);

}  // namespace custody::p11
