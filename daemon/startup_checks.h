#pragma once
// The checks custodyd makes at start before it opens the token, in one place: start-up calls
// them one by one (and stops at the first), `custodyd --check-config` runs them all and reports
// every problem. A rule lives only here, so the two cannot disagree.
#include <string>
#include <vector>

#include "common/expected.h"
#include "config/config.h"
#include "daemon/core/admin/operators.h"
#include "daemon/xks/sigv4.h"

namespace custody::config {

// The operators' public keys read from their files and checked (curve, RSA size, one key per
// operator); the message names the file and what to fix.
Expected<core::OperatorSet, std::string> load_operators(const DualControl& dual_control);

// token.pin as a file: a regular file, owned by the user custodyd runs as, mode 0400 or 0600.
// Env and credential sources are not checked here (they exist only in the daemon's environment).
Expected<void, std::string> check_pin_file(const p11::PinSource& pin);

// The directory that will hold `file` (`key` names the setting): it exists and this user can
// create files in it, or it can be made. With `create`, a missing directory is made (0700).
Expected<void, std::string> prepare_directory_of(const std::string& file, const std::string& key, bool create);

// A socket path custodyd would bind: nothing but a socket holds the name (systemd's, under
// socket activation, or a stale one), and when none is there its directory exists and is
// writable, or can be made.
Expected<void, std::string> check_socket_path(const Socket& socket, const std::string& key);

// The xks section's SigV4 secrets, read as start-up and SIGHUP read them (daemon/xks/secret_file.h);
// the first credential that cannot be read is the error.
Expected<std::vector<xks::SigV4Credential>, std::string> read_xks_credentials(const Xks& xks);

// The xks section's files as the listener would use them, starting nothing: the TLS certificate and
// key load and match, the client CA reads, each credential's secret reads and is valid. One message
// per problem, naming the setting and the fix. Key names need the state store: not checked here.
std::vector<std::string> check_xks(const Xks& xks);

// Every check above, changing nothing; each problem is one message.
std::vector<std::string> check_startup(const Config& config);

}  // namespace custody::config
