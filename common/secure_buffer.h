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
// A string whose characters only ever live in zeroizing heap memory. A plain basic_string keeps
// up to 15 characters in a buffer inside the object (the small-string optimisation), which no
// allocator sees and nothing wipes: a short PIN would stay in freed stack or heap. So every
// SecureString reserves more than that buffer holds before it stores a character, and never
// shrinks back into it.
class SecureString : public std::basic_string<char, std::char_traits<char>, ZeroizingAllocator<char>> {
  using Base = std::basic_string<char, std::char_traits<char>, ZeroizingAllocator<char>>;

 public:
  // Larger than any standard library's in-object buffer (libstdc++ 15, libc++ 22 characters).
  static constexpr std::size_t kMinCapacity = 32;

  SecureString() { Base::reserve(kMinCapacity); }
  SecureString(const char* text) : SecureString(std::string_view(text)) {}
  SecureString(const char* text, std::size_t size) : SecureString(std::string_view(text, size)) {}
  explicit SecureString(std::string_view text) : SecureString() { Base::append(text.data(), text.size()); }
  SecureString(const SecureString& other) : SecureString(std::string_view(other.data(), other.size())) {}
  // Takes other's heap buffer; other gets a fresh one, so later writes to it stay on the heap too.
  SecureString(SecureString&& other) : Base(std::move(static_cast<Base&>(other))) { other.Base::reserve(kMinCapacity); }
  SecureString& operator=(const SecureString& other) {
    if (this != &other) Base::assign(other.data(), other.size());  // capacity only grows: stays on the heap
    return *this;
  }
  SecureString& operator=(SecureString&& other) {
    if (this != &other) {
      Base::swap(other);  // both buffers are on the heap; other's old characters are wiped when it goes
      other.clear();
    }
    return *this;
  }
  SecureString& operator=(std::string_view text) {
    Base::assign(text.data(), text.size());
    return *this;
  }
  // Shrinking could move the characters into the in-object buffer.
  void shrink_to_fit() {}
  void reserve(std::size_t n) { Base::reserve(n < kMinCapacity ? kMinCapacity : n); }
  std::string_view view() const { return {data(), size()}; }
};

inline Bytes to_bytes(std::string_view s) { return Bytes(s.begin(), s.end()); }

}  // namespace custody
