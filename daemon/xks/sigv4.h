#pragma once
// AWS Signature Version 4 verification, as KMS signs its calls to an XKS proxy: header-based
// ("Authorization: AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=..."), service
// kms-xks-proxy, a configured region, the request time in X-Amz-Date within ±max_skew of ours.
// Transport-free: the front end, the unit tests and the fuzzer call the same functions.
#include <chrono>
#include <ctime>
#include <string>
#include <string_view>
#include <vector>

#include "common/expected.h"
#include "common/secure_buffer.h"
#include "daemon/transport/http_request_parser.h"

namespace custody::xks {

struct SigV4Credential {
  std::string access_key_id;
  SecureBytes secret;  // the secret access key's bytes, as read from its file
};

struct SigV4Settings {
  std::string region;
  std::string service = "kms-xks-proxy";
  std::chrono::seconds max_skew{300};
};

// The parts of an Authorization header.
struct SigV4Authorization {
  std::string access_key_id;
  std::string date;  // YYYYMMDD, from the credential scope
  std::string region;
  std::string service;
  std::vector<std::string> signed_headers;  // lowercase, in the order given (which must be sorted)
  std::string signature;  // 64 lowercase hex digits
};

// Parses "AWS4-HMAC-SHA256 Credential=<id>/<date>/<region>/<service>/aws4_request,
// SignedHeaders=<h1;h2>, Signature=<hex>". Anything else is an error saying what is wrong.
Expected<SigV4Authorization, std::string> parse_authorization(std::string_view header);

struct SignedRequest {
  std::string_view method;
  std::string_view target;  // as sent: path and query
  const std::vector<transport::HttpField>& fields;
  std::string_view body;
};

// The canonical request of SigV4 for these signed headers (exposed for tests and the fuzzer).
Expected<std::string, std::string> canonical_request(const SignedRequest& request,
                                                     const std::vector<std::string>& signed_headers);

// Verifies the request's signature against the credential its Authorization names. Answers the
// access key id that signed it; an error (safe to log, never containing a secret) otherwise.
Expected<std::string, std::string> verify_sigv4(const SignedRequest& request, const std::vector<SigV4Credential>& credentials,
                                                const SigV4Settings& settings, std::time_t now);

// The signature a client computes (for tests and `custodyctl`): hex HMAC chain over the string to sign.
std::string sigv4_signature(std::string_view secret, std::string_view date, std::string_view region,
                            std::string_view service, std::string_view string_to_sign);

}  // namespace custody::xks
