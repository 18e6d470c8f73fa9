// The recovery bundle parser (CONTRACT §11) on arbitrary bytes: B comes from another site through
// operators' hands. parse_bundle refuses what it cannot use with invalid_argument, and what it
// accepts re-encodes to a B that parses to the same bundle (encoding is a fixed point). The same
// bytes are tried as an envelope, whose checks must never accept a signature they did not verify.
#include <boost/json.hpp>
#include <cstdint>
#include <string_view>

#include "daemon/core/recovery/recovery_bundle.h"
#include "tests/fuzz/fuzz_check.h"

using namespace custody;

using fuzz::check;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  auto parsed = core::parse_bundle(bytes);
  if (!parsed) {
    check(parsed.error().code == core::Code::invalid_argument, "a refused bundle is invalid_argument");
  } else {
    check(parsed->keys.size() <= core::kMaxBundleKeys, "an accepted bundle is bounded");
    for (const auto& k : parsed->keys) {
      check(core::valid_key_name(k.name), "an accepted key has a valid name");
      check(k.versions.size() == k.current_version, "every version is listed");
      for (const auto& v : k.versions) check((v.state == "destroyed") != v.wrapped.has_value(), "only live versions carry material");
    }
    const std::string once = core::encode_bundle(*parsed);
    auto again = core::parse_bundle(once);
    check(again.has_value(), "an encoded bundle parses");
    check(core::encode_bundle(*again) == once, "encoding is a fixed point");
  }
  boost::system::error_code ec;
  boost::json::parse_options options;
  options.max_depth = 16;
  auto v = boost::json::parse(bytes, ec, {}, options);
  if (ec) return 0;
  auto envelope = core::parse_envelope(v);
  if (!envelope) {
    check(envelope.error().code == core::Code::invalid_argument, "a refused envelope is invalid_argument");
    return 0;
  }
  // Pinned to the envelope's own key: only a real signature over B passes.
  auto verified = core::verify_envelope(*envelope, envelope->public_key_pem);
  if (!verified) check(verified.error().code == core::Code::invalid_argument, "a refused envelope is invalid_argument");
  return 0;
}
