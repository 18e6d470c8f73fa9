#include "daemon/core/crypto/blob_codec.h"

#include "daemon/core/keys/key.h"

namespace custody::core {
namespace {
constexpr std::uint8_t kMagic[4] = {'C', 'S', 'T', 0x01};
}

Bytes encode_blob_header(std::string_view key_name, std::uint32_t version, std::span<const std::uint8_t> iv) {
  Bytes h(kMagic, kMagic + 4);
  h.reserve(4 + 1 + key_name.size() + 4 + kIvSize);
  h.push_back(static_cast<std::uint8_t>(key_name.size()));
  h.insert(h.end(), key_name.begin(), key_name.end());
  for (int shift = 24; shift >= 0; shift -= 8) h.push_back(static_cast<std::uint8_t>(version >> shift));
  h.insert(h.end(), iv.begin(), iv.end());
  return h;
}

Outcome<ParsedBlob> parse_blob(std::span<const std::uint8_t> blob) {
  if (blob.size() < 5 || !std::equal(kMagic, kMagic + 3, blob.begin()))
    return fail(Code::invalid_ciphertext, "not a custody ciphertext");
  if (blob[3] != kMagic[3]) return fail(Code::invalid_ciphertext, "unsupported ciphertext version");
  std::size_t name_len = blob[4];
  std::size_t header_len = 5 + name_len + 4 + kIvSize;
  if (blob.size() < header_len + kTagSize) return fail(Code::invalid_ciphertext, "ciphertext is truncated");
  ParsedBlob p;
  p.key_name.assign(reinterpret_cast<const char*>(blob.data() + 5), name_len);
  if (!valid_key_name(p.key_name)) return fail(Code::invalid_ciphertext, "ciphertext names an invalid key");
  const std::uint8_t* v = blob.data() + 5 + name_len;
  p.version = static_cast<std::uint32_t>(v[0]) << 24 | static_cast<std::uint32_t>(v[1]) << 16 |
              static_cast<std::uint32_t>(v[2]) << 8 | v[3];
  if (p.version == 0) return fail(Code::invalid_ciphertext, "ciphertext names key version 0");
  p.header = blob.first(header_len);
  p.iv = blob.subspan(header_len - kIvSize, kIvSize);
  p.ciphertext_and_tag = blob.subspan(header_len);
  return p;
}

Bytes blob_aad(std::span<const std::uint8_t> header, std::span<const std::uint8_t> ctx) {
  Bytes aad(header.begin(), header.end());
  aad.insert(aad.end(), ctx.begin(), ctx.end());
  return aad;
}

}  // namespace custody::core
