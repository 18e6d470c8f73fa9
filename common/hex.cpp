#include "common/hex.h"

#include <openssl/evp.h>


namespace custody {
namespace {
std::string hex_with(std::span<const std::uint8_t> data, const char* digits) {
  std::string out;
  out.reserve(data.size() * 2);
  for (std::uint8_t b : data) {
    out.push_back(digits[b >> 4]);
    out.push_back(digits[b & 0x0f]);
  }
  return out;
}
int nibble(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}
}  // namespace

std::string hex_lower(std::span<const std::uint8_t> data) { return hex_with(data, "0123456789abcdef"); }
std::string hex_upper(std::span<const std::uint8_t> data) { return hex_with(data, "0123456789ABCDEF"); }

std::optional<Bytes> hex_decode(std::string_view text) {
  if (text.size() % 2 != 0) return std::nullopt;
  Bytes out(text.size() / 2);
  for (std::size_t i = 0; i < out.size(); ++i) {
    int hi = nibble(text[2 * i]), lo = nibble(text[2 * i + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out[i] = static_cast<std::uint8_t>(hi << 4 | lo);
  }
  return out;
}

Expected<Bytes, std::string> sha256(std::span<const std::uint8_t> data) {
  Bytes digest(32);
  unsigned int len = 0;
  if (EVP_Digest(data.data(), data.size(), digest.data(), &len, EVP_sha256(), nullptr) != 1 || len != digest.size())
    return unexpected(std::string("OpenSSL cannot compute SHA-256 (out of memory?)"));
  return digest;
}

Expected<std::string, std::string> sha256_hex(std::span<const std::uint8_t> data) {
  auto digest = sha256(data);
  if (!digest) return unexpected(digest.error());
  return hex_lower(*digest);
}

}  // namespace custody
