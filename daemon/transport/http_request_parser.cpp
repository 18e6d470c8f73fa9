#include "daemon/transport/http_request_parser.h"

#include <openssl/crypto.h>

#include <algorithm>
#include <cctype>
#include <boost/asio/buffer.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/http/error.hpp>

namespace custody::transport {

namespace http = boost::beast::http;
using boost::beast::error_code;
using boost::beast::string_view;

namespace {

// Appends without ever leaving an unwiped copy behind: bodies carry plaintext in base64, and a
// std::string that grows frees its old buffer as it is.
void append_wiping(std::string& to, string_view more, std::size_t limit) {
  if (to.size() + more.size() > to.capacity()) {
    std::string bigger;
    bigger.reserve(std::min(std::max(to.capacity() * 2, to.size() + more.size()), std::max(limit, to.size() + more.size())));
    bigger.append(to);
    OPENSSL_cleanse(to.data(), to.size());
    to.swap(bigger);
  }
  to.append(more.data(), more.size());
}

std::string_view trim(string_view s) {
  std::string_view v(s.data(), s.size());
  while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
  while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
  return v;
}

}  // namespace

HttpRequestParser::HttpRequestParser(const HttpLimits& limits) : limits_(limits) {
  header_limit(static_cast<std::uint32_t>(limits_.max_header_bytes));
  body_limit(limits_.max_body_bytes);
  eager(true);
}

HttpRequestParser::~HttpRequestParser() { OPENSSL_cleanse(body_.data(), body_.size()); }

void HttpRequestParser::refuse(int status, std::string message, error_code& ec) {
  if (!refused_) refusal_ = {status, std::move(message)};
  refused_ = true;
  ec = http::error::bad_value;
}

HttpRequestParser::Progress HttpRequestParser::feed(std::string_view input, std::size_t& consumed) {
  consumed = 0;
  if (!input.empty()) started_ = true;
  if (!is_header_done()) {
    // Beast joins obs-fold continuation lines silently; refuse them before it sees them.
    // Only the header's own bytes are scanned, each once.
    // Until the header is complete Beast consumes nothing, so `input` starts at the same byte
    // on every call and the part already scanned can be skipped.
    const auto end = input.find("\r\n\r\n", header_scanned_ > 3 ? header_scanned_ - 3 : 0);
    const std::string_view head = input.substr(0, end == std::string_view::npos ? input.size() : end + 2);
    for (std::size_t i = std::max<std::size_t>(header_scanned_, 1); i < head.size(); ++i) {
      if (head[i - 1] == '\n' && (head[i] == ' ' || head[i] == '\t')) {
        error_code ec;
        refuse(400, "header continuation lines (obs-fold) are not accepted", ec);
        return Progress::refused;
      }
    }
    header_scanned_ = head.size();
  }
  while (!is_done()) {
    if (consumed == input.size()) return Progress::need_more;
    // Beast 1.81 asserts that it is called again on at least 5 bytes once it has asked for more
    // inside the last chunk ("0\r\n" then "\r\n"); a client sending a byte at a time breaks that
    // (found by the HTTP fuzzer). No request can end in fewer than 5 bytes from where Beast
    // stopped, so waiting for them never stalls a complete one.
    if (asked_for_more_ && input.size() - consumed < 5) return Progress::need_more;
    error_code ec;
    const std::size_t n = put(boost::asio::buffer(input.data() + consumed, input.size() - consumed), ec);
    consumed += n;
    asked_for_more_ = ec == http::error::need_more;
    if (refused_) return Progress::refused;
    if (ec == http::error::need_more) {
      // A line that never ends (a chunk header, a trailer) must not grow the buffer forever.
      if (input.size() - consumed > limits_.max_header_bytes) {
        refuse(400, "a line of the request is longer than " + std::to_string(limits_.max_header_bytes) + " bytes", ec);
        return Progress::refused;
      }
      return Progress::need_more;
    }
    if (ec == http::error::body_limit) {
      refuse(413, "the body is larger than " + std::to_string(limits_.max_body_bytes) + " bytes", ec);
      return Progress::refused;
    }
    if (ec == http::error::header_limit) {
      refuse(400, "the request header is larger than " + std::to_string(limits_.max_header_bytes) + " bytes", ec);
      return Progress::refused;
    }
    if (ec) {
      refuse(400, "malformed HTTP request: " + ec.message(), ec);
      return Progress::refused;
    }
    if (n == 0) return Progress::need_more;
  }
  return Progress::complete;
}

void HttpRequestParser::on_request_impl(http::verb, string_view method_str, string_view target, int version,
                                        error_code& ec) {
  if (version != 10 && version != 11) return refuse(400, "only HTTP/1.0 and HTTP/1.1 are served", ec);
  if (target.empty() || target.front() != '/') return refuse(400, "the request target must be a path", ec);
  // The target reaches answers and audit records as a JSON string: printable ASCII only (a URL
  // escapes everything else).
  for (char c : target)
    if (c <= 0x20 || c >= 0x7f) return refuse(400, "the request target must be printable ASCII", ec);
  method_.assign(method_str.data(), method_str.size());
  target_.assign(target.data(), target.size());
  version_ = static_cast<unsigned>(version);
}

void HttpRequestParser::on_response_impl(int, string_view, int, error_code& ec) {
  refuse(400, "a response is not a request", ec);
}

void HttpRequestParser::on_field_impl(http::field name, string_view name_string, string_view value, error_code& ec) {
  if (in_trailer_) return refuse(400, "trailer fields are not accepted", ec);
  if (++fields_ > limits_.max_fields)
    return refuse(400, "more than " + std::to_string(limits_.max_fields) + " header fields", ec);
  if (limits_.keep_fields) {
    std::string lower(name_string.data(), name_string.size());
    std::transform(lower.begin(), lower.end(), lower.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    kept_fields_.push_back({std::move(lower), std::string(trim(value))});
  }
  switch (name) {
    case http::field::content_length:
      if (++content_lengths_ > 1) return refuse(400, "more than one Content-Length", ec);
      break;
    case http::field::transfer_encoding:
      if (++transfer_encodings_ > 1) return refuse(400, "more than one Transfer-Encoding", ec);
      if (!boost::beast::iequals(trim(value), "chunked"))
        return refuse(400, "the only transfer coding accepted is a single 'chunked'", ec);
      chunked_ = true;
      break;
    case http::field::expect:
      if (!boost::beast::iequals(trim(value), "100-continue")) return refuse(400, "unsupported Expect", ec);
      expect_continue_ = true;
      break;
    default:
      if (boost::beast::iequals(name_string, "x-request-id")) {
        if (!request_id_.empty()) return refuse(400, "more than one X-Request-Id", ec);
        request_id_.assign(value.data(), value.size());
      }
  }
}

void HttpRequestParser::on_header_impl(error_code& ec) {
  if (content_lengths_ && transfer_encodings_)
    return refuse(400, "Content-Length and Transfer-Encoding together are ambiguous", ec);
  if (upgrade()) return refuse(400, "protocol upgrades are not served", ec);
}

void HttpRequestParser::on_body_init_impl(const boost::optional<std::uint64_t>& content_length, error_code&) {
  // A known length is reserved at once, so the body never reallocates (and never leaves a copy).
  if (content_length) body_.reserve(static_cast<std::size_t>(std::min<std::uint64_t>(*content_length, limits_.max_body_bytes)));
}

std::size_t HttpRequestParser::on_body_impl(string_view body, error_code&) {
  append_wiping(body_, body, limits_.max_body_bytes);
  return body.size();
}

void HttpRequestParser::on_chunk_header_impl(std::uint64_t size, string_view extensions, error_code& ec) {
  if (!extensions.empty()) return refuse(400, "chunk extensions are not accepted", ec);
  if (size == 0) in_trailer_ = true;
}

std::size_t HttpRequestParser::on_chunk_body_impl(std::uint64_t, string_view body, error_code&) {
  append_wiping(body_, body, limits_.max_body_bytes);
  return body.size();
}

void HttpRequestParser::on_finish_impl(error_code&) {}

}  // namespace custody::transport
