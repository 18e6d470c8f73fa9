#pragma once
// Where a token PIN comes from (DESIGN invariant 6): a file readable by the owner only, an
// environment variable, or a systemd credential ($CREDENTIALS_DIRECTORY/NAME). Never from YAML.
#include <string>

#include "common/expected.h"
#include "common/secure_buffer.h"

namespace custody::p11 {

struct PinSource {
  enum class Kind { file, env, credential } kind = Kind::file;
  std::string value;  // path, variable name, or credential name
  std::string describe() const;
};

// A PIN file over 4 KiB is an error naming it, never cut short; trailing newlines are dropped.
// An environment variable is wiped and removed from the environment once read: call this once.
Expected<SecureString, std::string> read_pin(const PinSource& source);

}  // namespace custody::p11
