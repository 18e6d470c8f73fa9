#include "daemon/core/crypto/hkdf.h"

namespace custody::core {

Outcome<SecureBytes> hkdf_expand(const HmacFunction& hmac_prk, std::span<const std::uint8_t> info,
                                 std::size_t length) {
  if (length == 0 || length > kHkdfMaxLength)
    return fail(Code::invalid_argument, "HKDF-Expand length must be 1.." + std::to_string(kHkdfMaxLength));
  SecureBytes okm;
  okm.reserve(length + 32);
  SecureBytes previous;
  SecureBytes message;
  for (std::uint8_t counter = 1; okm.size() < length; ++counter) {
    message.assign(previous.begin(), previous.end());
    message.insert(message.end(), info.begin(), info.end());
    message.push_back(counter);
    auto block = hmac_prk(message);
    if (!block) return unexpected(block.error());
    if (block->size() != 32) return fail(Code::internal, "HMAC-SHA256 returned a wrong length");
    okm.insert(okm.end(), block->begin(), block->end());
    previous = std::move(*block);
  }
  okm.resize(length);
  return okm;
}

}  // namespace custody::core
