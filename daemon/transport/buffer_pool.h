#pragma once
// Read buffers shared by the connections of one server. A connection holds one only from the
// first byte of a request until it is parsed: a thousand idle keep-alive connections then hold
// none, and a busy one reuses a buffer instead of allocating one per request. Buffers come back
// wiped (RequestReader wipes every byte it consumes). Touched on the I/O thread only.
#include <cstddef>
#include <string>
#include <vector>

namespace custody::transport {

class BufferPool {
 public:
  BufferPool(std::size_t buffer_bytes, std::size_t max_kept) : buffer_bytes_(buffer_bytes), max_kept_(max_kept) {}

  std::string take() {
    if (free_.empty()) return std::string(buffer_bytes_, '\0');
    std::string b = std::move(free_.back());
    free_.pop_back();
    return b;
  }

  // Keeps at most max_kept buffers: beyond what was busy at once recently, memory goes back.
  void give_back(std::string buffer) {
    if (buffer.size() == buffer_bytes_ && free_.size() < max_kept_) free_.push_back(std::move(buffer));
  }

  std::size_t kept() const { return free_.size(); }

 private:
  std::size_t buffer_bytes_;
  std::size_t max_kept_;
  std::vector<std::string> free_;
};

}  // namespace custody::transport
