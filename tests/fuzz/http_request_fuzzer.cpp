// The HTTP request path as custodyd runs it, on arbitrary bytes: the connection's RequestReader
// (fixed buffer + strict parser) is fed the input in pieces whose sizes the input's first bytes
// choose, request after request (pipelining), and each outcome is rendered as the server renders
// it. Invariants: nothing throws, the buffer never grows, a body never passes the limit, every
// refusal is a 400 or 413 with a message, and every answer is well-formed HTTP.
#include <cstdint>
#include <cstring>
#include <string>

#include "daemon/service/call.h"
#include "daemon/transport/http_response.h"
#include "daemon/transport/request_reader.h"
#include "tests/fuzz/fuzz_check.h"

using namespace custody;
using fuzz::check;
using Progress = transport::HttpRequestParser::Progress;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  // The first byte's top bit picks the daemon's default limits or small ones the fuzzer reaches
  // with short inputs; its other bits, how much one read returns.
  const transport::HttpLimits limits = (data[0] & 0x80) ? transport::HttpLimits{} : transport::HttpLimits{512, 1024, 16};
  const std::size_t piece = 1 + (data[0] & 0x7f) % 64;
  const char* input = reinterpret_cast<const char*>(data + 1);
  std::size_t left = size - 1;

  transport::RequestReader reader(limits);
  const std::size_t capacity = reader.space().size();
  std::string out;
  for (int requests = 0; requests < 64; ++requests) {
    Progress progress;
    while ((progress = reader.step()) == Progress::need_more) {
      if (left == 0) return 0;  // the peer went quiet: the server would time out
      auto space = reader.space();
      check(!space.empty(), "there is room for a read while the parser needs more");
      const std::size_t n = std::min({piece, left, space.size()});
      std::memcpy(space.data(), input, n);
      input += n;
      left -= n;
      reader.commit(n);
      check(reader.buffered() <= capacity, "the read buffer never grows");
    }
    auto& parser = reader.request();
    service::Response response;
    std::string request_id = service::choose_request_id(parser.request_id());
    if (progress == Progress::refused) {
      const auto& r = parser.refusal();
      check(r.status == 400 || r.status == 413, "a refusal is a 400 or a 413");
      response = service::error_response(
          {r.status == 413 ? core::Code::payload_too_large : core::Code::invalid_argument, r.message}, request_id);
    } else {
      check(parser.body().size() <= limits.max_body_bytes, "a body never passes the limit");
      check(!parser.target().empty() && parser.target()[0] == '/', "a target is a path");
      response.body = "{}";
    }
    out.clear();
    transport::render_response(response, request_id, progress == Progress::complete && parser.keep_alive(), out);
    check(out.rfind("HTTP/1.1 ", 0) == 0, "an answer starts with a status line");
    const auto end = out.find("\r\n\r\n");
    check(end != std::string::npos, "an answer has a complete header");
    check(out.size() - end - 4 == response.body.size(), "Content-Length matches the body");
    if (progress == Progress::refused) return 0;  // the server closes after a refusal
    if (!parser.keep_alive()) return 0;
    reader.next();
  }
  return 0;
}
