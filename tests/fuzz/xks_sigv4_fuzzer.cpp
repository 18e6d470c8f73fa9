// The SigV4 verifier and the ciphertextMetadata decoder on arbitrary input: the first line is an
// Authorization value, the next lines "name: value" header fields, the rest the body. Nothing may
// crash, read out of bounds or accept a request no credential signed.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "daemon/xks/ciphertext_metadata.h"
#include "daemon/xks/sigv4.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace custody;
  std::string_view in(reinterpret_cast<const char*>(data), size);
  (void)xks::decode_metadata(std::span<const std::uint8_t>(data, size));
  const auto first = in.find('\n');
  (void)xks::parse_authorization(in.substr(0, first));
  std::vector<transport::HttpField> fields{{"authorization", std::string(in.substr(0, first))}};
  std::string_view rest = first == std::string_view::npos ? std::string_view{} : in.substr(first + 1);
  while (!rest.empty() && fields.size() < 16) {
    const auto nl = rest.find('\n');
    std::string_view line = rest.substr(0, nl);
    rest = nl == std::string_view::npos ? std::string_view{} : rest.substr(nl + 1);
    const auto colon = line.find(':');
    if (colon == std::string_view::npos) break;
    fields.push_back({std::string(line.substr(0, colon)), std::string(line.substr(colon + 1))});
  }
  std::string secret(43, 's');
  const std::vector<xks::SigV4Credential> credentials{{"AKIAFUZZFUZZFUZZFUZZ", SecureBytes(secret.begin(), secret.end())}};
  xks::SigV4Settings settings;
  settings.region = "us-east-1";
  auto r = xks::verify_sigv4(xks::SignedRequest{"POST", "/kms/xks/v1/health", fields, rest}, credentials, settings, 1'700'000'000);
  // A random input that verifies would mean the HMAC check is not a check.
  if (r) __builtin_trap();
  return 0;
}
