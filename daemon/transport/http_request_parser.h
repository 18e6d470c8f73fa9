#pragma once
// A strict HTTP/1.1 request parser: Beast's basic_parser does the tokenising; this class keeps
// only what custody uses and refuses what a key service has no reason to accept: trailers, chunk
// extensions, transfer codings other than one "chunked", Content-Length beside Transfer-Encoding,
// repeated framing headers, obs-fold, too many fields. Nothing here grows without a bound: the
// header is limited by the caller's buffer and max_header_bytes, the body by max_body_bytes.
// Transport-free: the server and the fuzzer feed it the same bytes.
#include <boost/beast/http/basic_parser.hpp>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace custody::transport {

struct HttpLimits {
  std::size_t max_header_bytes = 16 * 1024;
  std::size_t max_body_bytes = 64 * 1024;
  unsigned max_fields = 100;
  // Keep every header field (name lowercased, value trimmed): for a listener that authenticates
  // requests by signed headers (SigV4). The Unix sockets keep none.
  bool keep_fields = false;
};

struct HttpField {
  std::string name;  // lowercase
  std::string value;
};

// Why a request was refused before it reached a route.
struct HttpRefusal {
  int status = 400;  // 400, or 413 for a body over the limit
  std::string message;
};

class HttpRequestParser final : public boost::beast::http::basic_parser<true> {
 public:
  explicit HttpRequestParser(const HttpLimits& limits);
  ~HttpRequestParser() override;

  enum class Progress { need_more, complete, refused };
  // Consumes what it can of `input`; `consumed` is set to the number of bytes used. Call again
  // with the unconsumed bytes followed by newly read ones.
  Progress feed(std::string_view input, std::size_t& consumed);

  const HttpRefusal& refusal() const { return refusal_; }
  const std::string& method() const { return method_; }
  const std::string& target() const { return target_; }
  unsigned version() const { return version_; }
  const std::string& request_id() const { return request_id_; }
  // Every field in arrival order, when HttpLimits::keep_fields; else empty.
  const std::vector<HttpField>& fields() const { return kept_fields_; }
  // The client waits for "100 Continue" before it sends the body (curl does for larger bodies).
  bool expects_continue() const { return expect_continue_; }
  bool started() const { return started_; }
  // The body; the caller moves it out and wipes it when done.
  std::string& body() { return body_; }

 private:
  void refuse(int status, std::string message, boost::beast::error_code& ec);

  void on_request_impl(boost::beast::http::verb method, boost::beast::string_view method_str,
                       boost::beast::string_view target, int version, boost::beast::error_code& ec) override;
  void on_response_impl(int, boost::beast::string_view, int, boost::beast::error_code& ec) override;
  void on_field_impl(boost::beast::http::field name, boost::beast::string_view name_string,
                     boost::beast::string_view value, boost::beast::error_code& ec) override;
  void on_header_impl(boost::beast::error_code& ec) override;
  void on_body_init_impl(const boost::optional<std::uint64_t>& content_length, boost::beast::error_code& ec) override;
  std::size_t on_body_impl(boost::beast::string_view body, boost::beast::error_code& ec) override;
  void on_chunk_header_impl(std::uint64_t size, boost::beast::string_view extensions,
                            boost::beast::error_code& ec) override;
  std::size_t on_chunk_body_impl(std::uint64_t remain, boost::beast::string_view body,
                                 boost::beast::error_code& ec) override;
  void on_finish_impl(boost::beast::error_code& ec) override;

  HttpLimits limits_;
  HttpRefusal refusal_;
  bool refused_ = false;
  bool started_ = false;
  std::string method_, target_, request_id_, body_;
  std::vector<HttpField> kept_fields_;
  unsigned version_ = 11;
  unsigned fields_ = 0;
  std::size_t header_scanned_ = 0;  // bytes of the unfinished header already checked for obs-fold
  unsigned content_lengths_ = 0, transfer_encodings_ = 0;
  bool chunked_ = false, expect_continue_ = false, in_trailer_ = false;
  bool asked_for_more_ = false;  // the last put() answered need_more
};

}  // namespace custody::transport
