#include "common/base64.h"

#include <openssl/evp.h>

#include <cstring>

namespace custody {
namespace {
bool is_alphabet(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
         c == '/';
}
int value_of(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  return c == '+' ? 62 : 63;
}
}  // namespace

std::size_t base64_encoded_size(std::size_t n) { return 4 * ((n + 2) / 3); }

void base64_encode_into(std::span<const std::uint8_t> data, char* out) {
  if (data.empty()) return;
  // EVP_EncodeBlock also writes a terminating NUL: encode into wiped scratch, then copy.
  SecureBytes scratch(base64_encoded_size(data.size()) + 1);
  int n = EVP_EncodeBlock(scratch.data(), data.data(), static_cast<int>(data.size()));
  std::memcpy(out, scratch.data(), static_cast<std::size_t>(n));
}

std::string base64_encode(std::span<const std::uint8_t> data) {
  std::string out(base64_encoded_size(data.size()), '\0');
  base64_encode_into(data, out.data());
  return out;
}

std::optional<SecureBytes> base64_decode(std::string_view text) {
  if (text.size() % 4 != 0) return std::nullopt;
  if (text.empty()) return SecureBytes{};
  std::size_t padding = 0;
  if (text.back() == '=') padding = text[text.size() - 2] == '=' ? 2 : 1;
  for (std::size_t i = 0; i < text.size() - padding; ++i)
    if (!is_alphabet(text[i])) return std::nullopt;
  // Canonical form only: the bits that padding leaves unused must be zero.
  const char last = text[text.size() - padding - 1];
  if (padding == 2 && (value_of(last) & 0x0f) != 0) return std::nullopt;
  if (padding == 1 && (value_of(last) & 0x03) != 0) return std::nullopt;
  SecureBytes out(text.size() / 4 * 3);
  int n = EVP_DecodeBlock(out.data(), reinterpret_cast<const unsigned char*>(text.data()),
                          static_cast<int>(text.size()));
  if (n < 0) return std::nullopt;
  out.resize(static_cast<std::size_t>(n) - padding);
  return out;
}

}  // namespace custody
