#pragma once
// custodyctl recovery (CONTRACT §11) and admin backup-state. init and trust talk to a token
// directly through PKCS#11 (the ceremony; the daemon never logs in as SO); export, import and
// verify talk to custodyd's admin socket.
#include <optional>
#include <string>
#include <vector>

#include "cli/commands.h"

namespace custody::cli {

struct TokenOptions {
  std::string module;
  std::optional<std::string> token_label, token_serial;
  std::optional<std::string> pin_file;  // else asked for on the terminal
};

struct RecoveryInitOptions {
  TokenOptions token;  // the recovery (DR) token, its user PIN (the DR daemon's)
  unsigned bits = 3072;
  std::optional<std::string> out;  // the public key PEM; default stdout
};
int cmd_recovery_init(const Globals& g, const RecoveryInitOptions& o);

struct RecoveryTrustOptions {
  TokenOptions token;  // the primary token; pin_file holds its SO PIN
  std::string public_key_file;
};
int cmd_recovery_trust(const Globals& g, const RecoveryTrustOptions& o);

// Fetches a bundle made by an executed export-recovery-bundle request and writes it to out.
int cmd_recovery_export(const Globals& g, const std::string& bundle_id, const std::string& out);
// Proposes import-recovery-bundle with the bundle file and the primary's attestation key (PEM).
int cmd_recovery_import(const Globals& g, const std::string& bundle_file, const std::string& attestation_key_file);
// The drill: exit 0 when every version passed, 4 when one did not.
int cmd_recovery_verify(const Globals& g, const std::string& bundle_file, const std::string& attestation_key_file);
// A consistent copy of the daemon's state database, written to a new file (mode 0600).
int cmd_admin_backup_state(const Globals& g, const std::string& out);

}  // namespace custody::cli
