#pragma once
// One connection's inbound side without the socket: a fixed buffer (a whole header plus one read,
// wiped as bytes are used; lent to a BufferPool while the connection is idle) and the parser of
// the request being read. The server
// reads into space(), commit()s, and step()s; the HTTP fuzzer drives the same calls with its
// bytes. A peer cannot make it grow: HttpRequestParser refuses any header or line that would
// need more than the buffer holds, and bodies go to the parser, bounded by max_body_bytes.
#include <optional>
#include <span>
#include <string>

#include "daemon/transport/http_request_parser.h"

namespace custody::transport {

class RequestReader {
 public:
  explicit RequestReader(const HttpLimits& limits);
  // Without a buffer until give_buffer(): for a reader whose buffers come from a BufferPool.
  struct NoBuffer {};
  RequestReader(const HttpLimits& limits, NoBuffer);
  ~RequestReader();
  RequestReader(const RequestReader&) = delete;
  RequestReader& operator=(const RequestReader&) = delete;

  // The buffer's size: what buffer_bytes() a BufferPool for readers must hand out.
  static std::size_t buffer_bytes(const HttpLimits& limits);
  // Lends the buffer out while nothing is buffered (an idle connection); give_buffer() before
  // the next space().
  std::string take_idle_buffer();
  void give_buffer(std::string buffer);

  // Where the next read goes; never empty while step() answers need_more.
  std::span<char> space() { return {buffer_.data() + length_, buffer_.size() - length_}; }
  void commit(std::size_t n) { length_ += n; }
  std::size_t buffered() const { return length_; }

  // Parses what is buffered into the current request.
  HttpRequestParser::Progress step();
  HttpRequestParser& request() { return *parser_; }
  // Starts the next request on the same connection (pipelined bytes stay buffered).
  void next();

 private:
  HttpLimits limits_;
  std::string buffer_;
  std::size_t length_ = 0;  // bytes read and not yet parsed, at the front of buffer_
  std::optional<HttpRequestParser> parser_;  // in place: no allocation per request
};

}  // namespace custody::transport
