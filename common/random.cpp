#include "common/random.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include <algorithm>
#include <climits>

namespace custody {

Expected<void, std::string> fill_random(std::span<std::uint8_t> out) {
  if (out.empty()) return {};
  OPENSSL_cleanse(out.data(), out.size());
  if (out.size() > static_cast<std::size_t>(INT_MAX)) return unexpected(std::string("too many random bytes asked for"));
  if (RAND_bytes(out.data(), static_cast<int>(out.size())) != 1) {
    OPENSSL_cleanse(out.data(), out.size());  // whatever it wrote before failing is no secret to rely on
    return unexpected(std::string("the random generator failed"));
  }
  // 2^-128 or less for a working generator: this is one that did not write.
  if (out.size() >= 16 && std::all_of(out.begin(), out.end(), [](std::uint8_t b) { return b == 0; }))
    return unexpected(std::string("the random generator returned only zeros"));
  return {};
}

}  // namespace custody
