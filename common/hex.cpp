#include "common/hex.h"

#include <openssl/evp.h>

#include <cstdio>
#include <cstdlib>

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

Bytes sha256(std::span<const std::uint8_t> data) {
  Bytes digest(32);
  unsigned int len = 0;
  // A digest is an identity (audit chain, key ids, challenges): a zero-filled stand-in would
  // be accepted as one. OpenSSL fails here only when out of memory, so stop instead.
  if (EVP_Digest(data.data(), data.size(), digest.data(), &len, EVP_sha256(), nullptr) != 1 || len != digest.size()) {
    std::fputs("custody: SHA-256 failed (out of memory?); stopping rather than use a wrong digest\n", stderr);
    std::abort();
  }
  return digest;
}

std::string sha256_hex(std::span<const std::uint8_t> data) { return hex_lower(sha256(data)); }

}  // namespace custody
