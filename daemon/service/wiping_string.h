#pragma once
// Request and response bytes: a string whose memory is wiped (OPENSSL_cleanse) before it is freed
// or reused, so the base64 plaintexts and keys a body carries do not linger in freed heap
// (DESIGN invariant 4). It holds a plain std::string so the transport can hand its read buffer
// over without a copy (assign a std::string&&) and take the bytes out with release(); whoever
// takes them out wipes them.
#include <openssl/crypto.h>

#include <algorithm>
#include <cstddef>
#include <string>
#include <string_view>
#include <utility>

namespace custody::service {

class WipingString {
 public:
  WipingString() = default;
  WipingString(std::string&& s) noexcept : s_(std::move(s)) {}
  WipingString(const std::string& s) : s_(s) {}
  WipingString(std::string_view s) : s_(s) {}
  WipingString(const char* s) : s_(s) {}
  WipingString(const WipingString& other) : s_(other.s_) {}
  WipingString(WipingString&& other) noexcept : s_(std::move(other.s_)) {}
  ~WipingString() { wipe(); }

  WipingString& operator=(const WipingString& other) {
    if (this != &other) assign_wiped(other.s_);
    return *this;
  }
  WipingString& operator=(WipingString&& other) noexcept {
    if (this != &other) {
      wipe();
      s_ = std::move(other.s_);  // our (wiped) buffer may go to `other`, which wipes it again
    }
    return *this;
  }
  WipingString& operator=(std::string&& s) noexcept {
    wipe();
    s_ = std::move(s);
    return *this;
  }
  WipingString& operator=(const std::string& s) { return assign_wiped(s); }
  WipingString& operator=(std::string_view s) { return assign_wiped(s); }
  WipingString& operator=(const char* s) { return assign_wiped(s); }

  operator std::string_view() const noexcept { return s_; }
  std::string_view view() const noexcept { return s_; }
  const char* data() const noexcept { return s_.data(); }
  char* data() noexcept { return s_.data(); }
  std::size_t size() const noexcept { return s_.size(); }
  bool empty() const noexcept { return s_.empty(); }

  // Growing moves the bytes to a new buffer and wipes the old one (std::string would free it
  // as it is); shrinking keeps the buffer, whose tail is wiped with the rest at the end.
  void resize(std::size_t n) {
    if (n > s_.capacity()) {
      std::string bigger;
      bigger.reserve(std::max(n, 2 * s_.capacity()));
      bigger.assign(s_);
      wipe();
      s_ = std::move(bigger);
    }
    s_.resize(n);
  }

  // Hands the bytes over without a copy; the caller must wipe them before freeing.
  std::string release() && noexcept { return std::move(s_); }

  // Wipes and empties it now, rather than when it goes (found by ADL: wipe(request.body)).
  friend void wipe(WipingString& s) noexcept { s.wipe(); }

  friend bool operator==(const WipingString& a, std::string_view b) noexcept { return a.view() == b; }

 private:
  template <class Source>
  WipingString& assign_wiped(const Source& source) {
    wipe();
    s_ = source;
    return *this;
  }
  // The whole buffer, not only size(): a moved-from or shrunk string keeps old bytes past it.
  void wipe() noexcept {
    s_.resize(s_.capacity());  // no allocation: the capacity is already there
    OPENSSL_cleanse(s_.data(), s_.size());
    s_.clear();
  }

  std::string s_;
};

}  // namespace custody::service
