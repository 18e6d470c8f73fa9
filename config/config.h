#pragma once
// custodyd's configuration as plain typed structs. Only the entry points read it; every other
// layer receives the parts it needs.
#include <sys/types.h>

#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/expected.h"
#include "pkcs11/pin_source.h"

namespace custody::config {

struct Token {
  std::string module;                    // path of the PKCS#11 library
  std::optional<std::string> init_args;  // CK_C_INITIALIZE_ARGS.pReserved, e.g. for NSS softokn
  std::optional<std::string> label;
  std::optional<std::string> serial;
  p11::PinSource pin;
  unsigned sessions = 4;  // session pool size
  // Threads making the data plane's PKCS#11 calls. 0: the I/O thread makes them itself (fastest
  // for a token in the process, e.g. SoftHSMv2); N: a pool of N threads, to overlap the round
  // trips of a network HSM. nullopt ("auto"): chosen at start from how fast the token answers.
  std::optional<unsigned> workers;
};

enum class Durability { always, group, none };

struct Audit {
  std::string path;
  Durability durability = Durability::group;
  std::uint64_t checkpoint_every = 1000;  // a signed checkpoint every this many records
  std::uint64_t max_file_bytes = 256ULL << 20;  // rotate the file past this size; 0: never
  // A signed checkpoint at most this long after the first record no checkpoint covers yet.
  std::chrono::milliseconds checkpoint_interval{60'000};
  // Retention of rotated files: the oldest go once more than max_files (0: no count limit) or
  // more than max_total_bytes (0: no size limit) are kept, and only when a signed checkpoint in a
  // newer file covers them.
  std::uint64_t max_files = 0;
  std::uint64_t max_total_bytes = 0;
  // Health says degraded (and a metric alarms) while the audit filesystem has less free space.
  std::uint64_t min_free_bytes = 1ULL << 30;
};

struct Socket {
  std::string path;
  mode_t mode = 0660;
  std::optional<std::string> group;
};

struct Limits {
  std::size_t max_body_bytes = 64 * 1024;
  std::size_t max_header_bytes = 16 * 1024;  // request line and headers together
  unsigned max_json_depth = 16;
  unsigned max_connections = 256;         // service socket
  unsigned max_connections_per_uid = 32;  // one uid's share of the service socket
  unsigned admin_connections = 16;        // the admin socket's own budget, never taken by services
  unsigned max_in_flight = 128;           // service socket, requests read and not yet answered (admin: admin_connections)
  double uid_requests_per_second = 0;     // per-uid rate (batch items count one each); 0: off
  unsigned uid_burst = 0;                 // bucket size; 0: one second's worth
  std::chrono::milliseconds first_byte_timeout{5'000};  // a new connection's first request byte
  std::chrono::milliseconds idle_timeout{60'000};       // between requests on a kept-alive connection
  std::chrono::milliseconds request_timeout{10'000};    // one request: read, queue, run, write
};

// The Kubernetes KMS v2 socket (sockets.kms + kms): off unless both are configured.
struct Kms {
  Socket socket;
  std::string key;  // the aes-256-gcm key it encrypts with
  std::chrono::milliseconds healthz_interval{10'000};
};

// The AWS KMS External Key Store proxy listener (xks): off unless the section is present.
struct XksCredential {
  std::string access_key_id;
  // The secret access key lives in a file (0400/0600) or a systemd credential, never in this file.
  std::string secret_file;
  bool systemd_credential = false;  // secret_file names a credential in $CREDENTIALS_DIRECTORY
};
struct XksTls {
  std::string certificate;  // PEM chain
  std::string private_key;  // PEM
  std::optional<std::string> client_ca;  // mTLS: clients need a certificate this CA signed
  std::string client_subject;            // with client_ca: whole RDNs the client subject must have
};
// One secondary authorization rule of the xks section (docs/xks.md): empty lists match anything.
struct XksAuthorizationRule {
  std::string name;
  std::vector<std::string> keys, principals, kms_key_arns, operations, source_vpcs, source_vpces;
};
struct Xks {
  std::string address = "127.0.0.1";
  std::uint16_t port = 8443;
  std::optional<XksTls> tls;  // nullopt: plain_http (behind a TLS-terminating load balancer)
  std::string region;
  std::string uri_prefix;  // "" or "/a/b": the API is at {uri_prefix}/kms/xks/v1
  std::vector<XksCredential> credentials;
  uid_t acts_as_uid = 0;  // key policies grant this uid wrap (ENCRYPT) and unwrap (DECRYPT)
  gid_t acts_as_gid = 0;
  std::map<std::string, std::string> keys;  // externalKeyId → custody key name
  std::string health_key;
  std::string ping_path = "/ping";
  std::chrono::milliseconds health_cache{10'000};  // deep health results reused this long (≤ 60 s)
  std::vector<XksAuthorizationRule> authorization;  // empty: every authenticated call is allowed
};

struct OperatorConfig {
  std::string name;
  std::string public_key_path;  // PEM SubjectPublicKeyInfo: EC P-256 or RSA >= 2048
};

struct DualControl {
  std::vector<OperatorConfig> operators;
  std::map<std::string, std::uint32_t> quorum;  // per operation; absent: 2
  std::chrono::milliseconds request_ttl{15 * 60'000};
};

struct Lifecycle {
  std::chrono::milliseconds min_destruction_wait{7LL * 86'400'000};
  std::chrono::milliseconds check_interval{60'000};
  std::uint64_t default_usage_limit = std::uint64_t{1} << 31;
};

struct Config {
  std::string source_path;
  std::string sha256;  // of the file's exact bytes, for attestation
  Token token;
  std::string state_path;
  // state.backend: sqlite (state_path, the default) or postgresql (a fleet sharing one database,
  // docs/fleet.md): a libpq conninfo without a password, the password in a file or a systemd credential.
  std::string state_backend = "sqlite";
  std::string state_dsn;
  std::string state_password_file;
  bool state_password_credential = false;  // state_password_file names a credential in $CREDENTIALS_DIRECTORY
  // state.max_staleness (postgresql): how long the data plane serves its last synchronised view
  // while the fleet sync fails, then 503; 0 fails closed at once.
  std::chrono::milliseconds state_max_staleness{30'000};
  Audit audit;
  Socket service_socket;
  Socket admin_socket;
  std::optional<Kms> kms;
  std::optional<Xks> xks;
  Limits limits;
  DualControl dual_control;
  Lifecycle lifecycle;
};

struct ConfigError {
  std::string key_path;  // e.g. "limits.max_body_bytes"
  int line = 0, column = 0;  // 1-based; 0 when not tied to a place in the file
  std::string message;
  std::string format(const std::string& file) const;
};

// Reads and validates the file; every problem is reported, not only the first.
Expected<Config, std::vector<ConfigError>> load_config(const std::string& path);
Expected<Config, std::vector<ConfigError>> parse_config(const std::string& text, const std::string& path);

const char* durability_name(Durability d);

}  // namespace custody::config
