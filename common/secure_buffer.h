#pragma once
// Byte containers. SecureBytes wipes its storage (OPENSSL_cleanse) whenever memory is released, so
// plaintext DEKs, derived keys and PINs never linger in freed heap (DESIGN invariant 4).
#include <openssl/crypto.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace custody {

template <class T>
struct ZeroizingAllocator {
  using value_type = T;
  ZeroizingAllocator() noexcept = default;
  template <class U>
  ZeroizingAllocator(const ZeroizingAllocator<U>&) noexcept {}
  T* allocate(std::size_t n) { return std::allocator<T>().allocate(n); }
  void deallocate(T* p, std::size_t n) noexcept {
    OPENSSL_cleanse(p, n * sizeof(T));
    std::allocator<T>().deallocate(p, n);
  }
  template <class U>
  bool operator==(const ZeroizingAllocator<U>&) const noexcept { return true; }
};

using Bytes = std::vector<std::uint8_t>;
using SecureBytes = std::vector<std::uint8_t, ZeroizingAllocator<std::uint8_t>>;
using SecureString = std::basic_string<char, std::char_traits<char>, ZeroizingAllocator<char>>;

inline Bytes to_bytes(std::string_view s) { return Bytes(s.begin(), s.end()); }

}  // namespace custody
