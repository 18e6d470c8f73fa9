#pragma once
// How the transport turns the daemon's bytes into a reply: one parser configuration and one
// extraction, shared by the socket path and by parse_reply_bytes (the unit tests and the fuzzer),
// so that what they check is what a Client runs.
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>
#include <string_view>

#include "custody/unix_http_client.h"

namespace custody::client::detail {

// Replies may carry plaintext or key bytes (base64): every buffer they pass through is wiped.
using WipedBody = boost::beast::http::basic_string_body<char, std::char_traits<char>, ZeroizingAllocator<char>>;
using WipedBuffer = boost::beast::basic_flat_buffer<ZeroizingAllocator<char>>;
using ReplyParser = boost::beast::http::response_parser<WipedBody>;

void apply_limits(ReplyParser& parser, const TransportLimits& limits);
// custodyd always sends a Content-Length. A chunked reply is refused as soon as its header is
// parsed (ec = bad_transfer_encoding): Beast 1.81 asserts on some chunked bodies that arrive split
// across reads, and the parser must never be fed one. The parser is never eager, so each put or
// read_some stops after the header and this check runs before any chunk is parsed.
void refuse_chunked(const ReplyParser& parser, boost::system::error_code& ec);
// The reply of a parser that is done.
SecureHttpReply reply_from(ReplyParser& parser);
// A reply held in memory, fed to the parser `chunk` bytes at a time (0: all at once). A reply
// that is malformed, over the limits or incomplete is a bad_reply Error.
Expected<SecureHttpReply, Error> parse_reply_bytes(std::string_view bytes, const TransportLimits& limits,
                                                   std::size_t chunk = 0);

}  // namespace custody::client::detail
