#pragma once
// SigV4 secret access keys from files or systemd credentials (never from the configuration).
#include <string>

#include "common/expected.h"
#include "common/secure_buffer.h"

namespace custody::xks {

// Reads a secret access key: the file's first line, 43 to 64 printable characters (what the KMS
// console accepts). A file others may read (group or world bits) is refused, like the PIN file.
// systemd_credential: `name` is looked up in $CREDENTIALS_DIRECTORY.
Expected<SecureBytes, std::string> read_secret(const std::string& name, bool systemd_credential);

}  // namespace custody::xks
