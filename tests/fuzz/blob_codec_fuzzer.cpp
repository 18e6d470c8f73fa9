// The ciphertext blob codec (CONTRACT §4) on arbitrary bytes: parse_blob never reads outside the
// input, and whatever it accepts re-encodes to exactly the header it parsed.
#include <cstdint>
#include <cstring>
#include <span>

#include "daemon/core/crypto/blob_codec.h"
#include "daemon/core/keys/key.h"
#include "tests/fuzz/fuzz_check.h"

using namespace custody;

using fuzz::check;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::span<const std::uint8_t> blob(data, size);
  auto parsed = core::parse_blob(blob);
  if (!parsed) {
    check(parsed.error().code == core::Code::invalid_ciphertext, "a refused blob is invalid_ciphertext");
    return 0;
  }
  check(core::valid_key_name(parsed->key_name), "an accepted blob names a valid key");
  check(parsed->version != 0, "an accepted blob has a version");
  check(parsed->iv.size() == core::kIvSize, "the IV is 12 bytes");
  check(parsed->ciphertext_and_tag.size() >= core::kTagSize, "there is room for the tag");
  check(parsed->header.data() == data, "the header starts the blob");
  check(parsed->header.size() + parsed->ciphertext_and_tag.size() == size, "header and ciphertext make the blob");
  check(parsed->iv.data() + parsed->iv.size() == parsed->ciphertext_and_tag.data(), "the IV ends the header");
  const Bytes again = core::encode_blob_header(parsed->key_name, parsed->version, parsed->iv);
  check(again.size() == parsed->header.size() && std::memcmp(again.data(), parsed->header.data(), again.size()) == 0,
        "re-encoding gives the header back");
  const std::uint8_t ctx[2] = {0, 0};
  const Bytes aad = core::blob_aad(parsed->header, ctx);
  check(aad.size() == parsed->header.size() + 2, "AAD is header || context");
  return 0;
}
