#include "daemon/service/request.h"

#include <openssl/rand.h>

#include "common/hex.h"

namespace custody::service {

std::string choose_request_id(std::string_view from_client) {
  bool usable = !from_client.empty() && from_client.size() <= 64;
  for (char c : from_client) usable = usable && c > 0x20 && c < 0x7f;
  if (usable) return std::string(from_client);
  std::uint8_t raw[16];
  RAND_bytes(raw, sizeof raw);
  return hex_lower(raw);
}

}  // namespace custody::service
