#pragma once
// custodyctl's commands. Each returns the process exit status:
//   0 success, 1 the daemon refused the request (4xx), 2 usage or input error,
//   3 the daemon is unreachable or unavailable (connection failure, 5xx), 4 verification failed,
//   5 not confirmed (the user declined the approval prompt).
#include <optional>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace custody::cli {

enum Exit { kOk = 0, kRefused = 1, kUsage = 2, kUnavailable = 3, kVerifyFailed = 4, kDeclined = 5 };

struct Globals {
  std::string service_socket;
  std::string admin_socket;
  bool json = false;
};

struct Input {
  std::optional<std::string> text;  // given on the command line
  std::string file = "-";           // else read from this file ("-" = stdin)
};

struct DataOptions {
  std::string key;
  Input input;
  std::vector<std::string> context;  // k=v
  std::optional<std::string> out;
};

int cmd_wrap(const Globals& g, const DataOptions& o);
int cmd_unwrap(const Globals& g, const DataOptions& o, bool base64_output);
int cmd_rewrap(const Globals& g, const DataOptions& o);
int cmd_datakey(const Globals& g, const std::string& key, unsigned length, const std::vector<std::string>& context,
                bool include_plaintext);
int cmd_derive(const Globals& g, const std::string& key, const Input& info, bool info_is_base64, unsigned length,
               std::optional<unsigned> version, bool hex_output);
int cmd_keys_list(const Globals& g);
int cmd_keys_show(const Globals& g, const std::string& key);
struct CreateOptions {
  std::string key;
  std::string algorithm = "aes-256-gcm";
  std::optional<std::string> policy_json;  // required unless no_policy
  bool no_policy = false;
  std::optional<std::string> rotation_period;
  std::optional<std::uint64_t> usage_limit;
  bool recovery = false;  // exportable to the recovery key only (docs/recovery.md); fixed for life
};
int cmd_keys_create(const Globals& g, const CreateOptions& o);
// Any other admin operation on one key: rotate-key, disable-key, enable-key,
// schedule-destruction, cancel-destruction, set-min-decrypt-version.
int cmd_key_operation(const Globals& g, const std::string& operation, const std::string& key,
                      const std::vector<std::pair<std::string, std::uint64_t>>& numbers = {});
int cmd_keys_check(const Globals& g);

// Dual control.
int cmd_admin_propose(const Globals& g, const std::string& operation, const std::string& params_json);
int cmd_admin_list(const Globals& g);
int cmd_admin_show(const Globals& g, const std::string& id);
int cmd_admin_cancel(const Globals& g, const std::string& id);
struct ApproveOptions {
  std::string id;
  std::string operator_name;
  std::optional<std::string> key_file;  // offline: a PEM private key
  std::optional<std::string> module;    // or the operator's PKCS#11 token
  std::optional<std::string> token_label, token_serial;
  std::string key_label = "approval";
  std::optional<std::string> pin_file;  // else the PIN is asked for
  bool yes = false;
};
int cmd_admin_approve(const Globals& g, const ApproveOptions& o);
int cmd_health(const Globals& g);

struct VerifyOptions {
  std::vector<std::string> files;
  std::string public_key_file;             // checkpoints (and a fetched attestation) verify with it
  std::optional<std::uint64_t> expect_seq;  // the log must reach it
  bool against_attestation = false;        // the log must reach the attested sequence and head
};
int cmd_audit_verify(const Globals& g, const VerifyOptions& o);

// The live audit log: env CUSTODY_AUDIT_LOG, else the packaged path (audit.path in the samples).
std::string default_audit_log();

struct TailOptions {
  std::string log;
  bool follow = false;
  unsigned lines = 10;
  std::string public_key_file;
};
int cmd_audit_tail(const Globals& g, const TailOptions& o);

struct UsageOptions {
  std::string log;
  std::optional<std::string> since;
  std::vector<std::string> keys;
  std::string public_key_file;
  bool allow_broken_chain = false;
};
int cmd_report_usage(const Globals& g, const UsageOptions& o);

struct AttestOptions {
  std::optional<std::string> nonce_b64;  // default: 32 random bytes
  std::vector<std::string> keys;
  std::optional<std::string> public_key_file;  // pin the daemon's key: verify with this one
  std::optional<std::string> out_report, out_signature, out_public_key;
};
int cmd_attest(const Globals& g, const AttestOptions& o);

struct ImportOptions {
  std::string job;
  std::optional<std::string> key_file;            // the raw key material K (32 bytes)
  std::optional<std::string> transport_key_file;  // method aes-kwp: the transport key T
  bool print_recipe = false;
  bool send_kcv = true;
};
int cmd_import(const Globals& g, const ImportOptions& o);
int cmd_import_jobs(const Globals& g);
int cmd_attest_key(const Globals& g);

}  // namespace custody::cli
