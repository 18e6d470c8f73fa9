#include "daemon/transport/request_reader.h"

#include <openssl/crypto.h>

#include <cstring>
#include <utility>

namespace custody::transport {

namespace {
constexpr std::size_t kReadChunk = 16 * 1024;
}  // namespace

RequestReader::RequestReader(const HttpLimits& limits) : limits_(limits), buffer_(buffer_bytes(limits), '\0') {
  parser_.emplace(limits_);
}

RequestReader::RequestReader(const HttpLimits& limits, NoBuffer) : limits_(limits) { parser_.emplace(limits_); }

std::size_t RequestReader::buffer_bytes(const HttpLimits& limits) { return limits.max_header_bytes + kReadChunk; }

std::string RequestReader::take_idle_buffer() {
  // Only an empty buffer leaves: every byte in it was consumed and wiped.
  if (length_ != 0) return {};
  return std::exchange(buffer_, std::string());
}

void RequestReader::give_buffer(std::string buffer) {
  if (length_ == 0 && buffer.size() == buffer_bytes(limits_)) buffer_ = std::move(buffer);
}

RequestReader::~RequestReader() { OPENSSL_cleanse(buffer_.data(), buffer_.size()); }

HttpRequestParser::Progress RequestReader::step() {
  std::size_t used = 0;
  auto progress = parser_->feed(std::string_view(buffer_.data(), length_), used);
  if (used) {
    // Drop the parsed bytes from the front, and wipe the copies they leave behind.
    std::memmove(buffer_.data(), buffer_.data() + used, length_ - used);
    OPENSSL_cleanse(buffer_.data() + (length_ - used), used);
    length_ -= used;
  }
  // The parser refuses before the buffer fills; should it ever not, refuse rather than spin.
  if (progress == HttpRequestParser::Progress::need_more && length_ == buffer_.size())
    return HttpRequestParser::Progress::refused;
  return progress;
}

void RequestReader::next() { parser_.emplace(limits_); }

}  // namespace custody::transport
