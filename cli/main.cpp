// custodyctl: command-line client for custodyd's service and admin sockets, and offline audit
// log verification. `custodyctl --help` and `custodyctl COMMAND --help` describe every option.
#include <CLI/CLI.hpp>
#include <cstdlib>
#include <iostream>
#include <tuple>

#include "common/admin_operations.h"
#include "common/duration.h"

#include "cli/commands.h"
#include "cli/migrate_state.h"
#include "cli/recovery_commands.h"
#include "cli/xks_commands.h"

namespace {

std::string env_or(const char* name, const char* fallback) {
  const char* v = std::getenv(name);
  return v && *v ? v : fallback;
}

void add_input(CLI::App* cmd, custody::cli::Input& in, const char* what) {
  cmd->add_option("--text", in.text, std::string(what) + " given on the command line");
  cmd->add_option("--in", in.file, std::string(what) + " read from a file; - for stdin (the default)");
}

}  // namespace

int main(int argc, char** argv) {
  using namespace custody::cli;
  CLI::App app{"custodyctl: talk to custodyd, the key custody daemon"};
  app.require_subcommand(1);
  // Global options are accepted after the subcommand too: `custodyctl admin show ID --json`.
  app.fallthrough();
  app.footer(
      "Exit status: 0 success, 1 refused by the daemon (4xx), 2 usage or input error (checked\n"
      "locally, nothing sent), 3 daemon unreachable or unavailable (5xx), 4 verification failed,\n"
      "5 not confirmed (the approval prompt was declined).");
  Globals g;
  g.service_socket = env_or("CUSTODY_SERVICE_SOCKET", "/run/custody/service.sock");
  g.admin_socket = env_or("CUSTODY_ADMIN_SOCKET", "/run/custody/admin.sock");
  app.add_option("--socket", g.service_socket, "service socket (env CUSTODY_SERVICE_SOCKET)")->capture_default_str();
  app.add_option("--admin-socket", g.admin_socket, "admin socket (env CUSTODY_ADMIN_SOCKET)")->capture_default_str();
  app.add_flag("--json", g.json, "print the daemon's JSON response as it is");
  app.set_version_flag("--version", std::string("custodyctl ") + CUSTODY_VERSION);

  int status = kOk;

  DataOptions wrap_o;
  auto* wrap = app.add_subcommand("wrap", "encrypt a plaintext under a key; prints the base64 ciphertext");
  wrap->add_option("key", wrap_o.key, "key name")->required();
  add_input(wrap, wrap_o.input, "plaintext");
  wrap->add_option("--context", wrap_o.context, "encryption context pair key=value (repeatable)");
  wrap->add_option("--out", wrap_o.out, "write the ciphertext to a file");
  wrap->callback([&] { status = cmd_wrap(g, wrap_o); });

  DataOptions unwrap_o;
  bool unwrap_b64 = false;
  auto* unwrap = app.add_subcommand("unwrap", "decrypt a base64 ciphertext; prints the raw plaintext");
  unwrap->add_option("key", unwrap_o.key, "key name")->required();
  add_input(unwrap, unwrap_o.input, "base64 ciphertext");
  unwrap->add_option("--context", unwrap_o.context, "encryption context pair key=value (repeatable)");
  unwrap->add_option("--out", unwrap_o.out, "write the plaintext to a file");
  unwrap->add_flag("--base64", unwrap_b64, "print the plaintext base64-encoded");
  unwrap->callback([&] { status = cmd_unwrap(g, unwrap_o, unwrap_b64); });

  DataOptions rewrap_o;
  auto* rewrap = app.add_subcommand("rewrap", "re-encrypt a ciphertext under the key's current version");
  rewrap->add_option("key", rewrap_o.key, "key name")->required();
  add_input(rewrap, rewrap_o.input, "base64 ciphertext");
  rewrap->add_option("--context", rewrap_o.context, "encryption context pair key=value (repeatable)");
  rewrap->add_option("--out", rewrap_o.out, "write the new ciphertext to a file");
  rewrap->callback([&] { status = cmd_rewrap(g, rewrap_o); });

  std::string dk_key;
  unsigned dk_length = 32;
  std::vector<std::string> dk_context;
  bool dk_no_plain = false;
  auto* datakey = app.add_subcommand("datakey", "make a data key: plaintext and ciphertext (base64)");
  datakey->add_option("key", dk_key, "key name")->required();
  datakey->add_option("--length", dk_length, "bytes, 1..64")->capture_default_str()->check(CLI::Range(1, 64));
  datakey->add_option("--context", dk_context, "encryption context pair key=value (repeatable)");
  datakey->add_flag("--no-plaintext", dk_no_plain, "return only the ciphertext");
  datakey->callback([&] { status = cmd_datakey(g, dk_key, dk_length, dk_context, !dk_no_plain); });

  std::string dv_key;
  Input dv_info;
  dv_info.file = "-";
  bool dv_info_b64 = false, dv_hex = false;
  unsigned dv_length = 32;
  std::optional<unsigned> dv_version;
  auto* derive = app.add_subcommand("derive", "derive key bytes with HKDF-Expand from an hmac-sha256 key");
  derive->add_option("key", dv_key, "key name")->required();
  derive->add_option("--info", dv_info.text, "info string (default empty)");
  derive->add_option("--info-file", dv_info.file, "read info from a file");
  derive->add_flag("--info-base64", dv_info_b64, "the info given is base64");
  derive->add_option("--length", dv_length, "bytes, 1..1024")->capture_default_str()->check(CLI::Range(1, 1024));
  derive->add_option("--version", dv_version, "key version (default: current)");
  derive->add_flag("--hex", dv_hex, "print hex instead of base64");
  derive->callback([&] { status = cmd_derive(g, dv_key, dv_info, dv_info_b64, dv_length, dv_version, dv_hex); });

  auto* keys = app.add_subcommand("keys", "list, show, create and rotate keys");
  keys->require_subcommand(1);
  keys->add_subcommand("list", "keys you may use")->callback([&] { status = cmd_keys_list(g); });
  std::string show_key;
  auto* show = keys->add_subcommand("show", "a key's metadata and versions");
  show->add_option("key", show_key, "key name")->required();
  show->callback([&] { status = cmd_keys_show(g, show_key); });
  CreateOptions create_o;
  auto* create = keys->add_subcommand("create", "propose creating a key (admin socket; needs approvals)");
  create->add_option("key", create_o.key, "key name")->required();
  create->add_option("--algorithm", create_o.algorithm, "aes-256-gcm or hmac-sha256")->capture_default_str();
  auto* policy_opt = create->add_option(
      "--policy", create_o.policy_json,
      "JSON list of rules, e.g. '[{\"uid\":1000,\"operations\":[\"wrap\",\"unwrap\"]}]' (required: a key "
      "without a policy serves nobody)");
  create->add_flag("--no-policy", create_o.no_policy,
                   "create the key with an empty policy on purpose (nobody may use it until set-policy)")
      ->excludes(policy_opt);
  create->add_option("--rotation-period", create_o.rotation_period, "rotate automatically this often, e.g. 90d");
  create->add_option("--usage-limit", create_o.usage_limit,
                     "rotate automatically after this many encryptions per version (default 2^31)");
  create->add_flag("--recovery", create_o.recovery,
                   "let the key be exported in recovery bundles, wrapped to the trusted recovery key only "
                   "(cannot be changed later)");
  create->callback([&] { status = cmd_keys_create(g, create_o); });

  // The admin operations that take just a key name.
  std::string op_key;
  for (auto [command, operation, help] : {
           std::tuple{"rotate", "rotate-key", "add a new current version"},
           std::tuple{"disable", "disable-key", "refuse every data-plane operation with the key"},
           std::tuple{"enable", "enable-key", "serve the key again"},
           std::tuple{"cancel-destruction", "cancel-destruction", "keep a key scheduled for destruction (it comes back disabled)"}}) {
    auto* sub = keys->add_subcommand(command, std::string(help) + " (proposes an admin request)");
    sub->add_option("key", op_key, "key name")->required();
    sub->callback([&, operation = std::string(operation)] { status = cmd_key_operation(g, operation, op_key); });
  }
  std::string destroy_key, destroy_wait = "7d";
  auto* destroy = keys->add_subcommand("schedule-destruction",
                                       "destroy every version of the key after a waiting period (admin socket)");
  destroy->add_option("key", destroy_key, "key name")->required();
  destroy->add_option("--wait", destroy_wait, "waiting period, at least lifecycle.min_destruction_wait")->capture_default_str();
  destroy->callback([&] {
    auto wait = custody::parse_duration(destroy_wait);
    if (!wait) {
      std::cerr << "custodyctl: --wait takes a duration such as 7d or 30d\n";
      status = kUsage;
      return;
    }
    status = cmd_key_operation(g, "schedule-destruction", destroy_key,
                               {{"wait_seconds", static_cast<std::uint64_t>(wait->count() / 1000)}});
  });
  std::string min_key;
  std::uint64_t min_version = 1;
  auto* min = keys->add_subcommand("set-min-decrypt-version",
                                   "retire older versions: their ciphertexts no longer unwrap (admin socket)");
  min->add_option("key", min_key, "key name")->required();
  min->add_option("version", min_version, "lowest version that still unwraps")->required();
  min->callback([&] { status = cmd_key_operation(g, "set-min-decrypt-version", min_key, {{"version", min_version}}); });
  keys->add_subcommand("check", "compare every key version with its token object now (admin socket)")
      ->callback([&] { status = cmd_keys_check(g); });

  auto* admin = app.add_subcommand("admin", "dual control: propose, list, show, approve and cancel admin requests");
  admin->require_subcommand(1);
  std::string prop_op, prop_params = "{}";
  auto* propose = admin->add_subcommand("propose", "propose an admin request");
  propose->add_option("operation", prop_op, "one of " + custody::admin_operation_list())->required();
  propose->add_option("--params", prop_params, "the operation's params as a JSON object")->capture_default_str();
  propose->callback([&] { status = cmd_admin_propose(g, prop_op, prop_params); });
  admin->add_subcommand("list", "every request and its state")->callback([&] { status = cmd_admin_list(g); });
  std::string req_id;
  auto* show_req = admin->add_subcommand("show", "one request, with the challenge operators sign");
  show_req->add_option("id", req_id, "request id")->required();
  show_req->callback([&] { status = cmd_admin_show(g, req_id); });
  auto* cancel = admin->add_subcommand("cancel", "cancel a pending request");
  cancel->add_option("id", req_id, "request id")->required();
  cancel->callback([&] { status = cmd_admin_cancel(g, req_id); });
  ApproveOptions appr;
  auto* approve = admin->add_subcommand(
      "approve", "show what a request does, then sign its challenge with your key and approve it");
  approve->add_option("id", appr.id, "request id")->required();
  approve->add_option("--operator", appr.operator_name, "your operator name, as in the daemon's configuration")->required();
  approve->add_option("--key-file", appr.key_file, "sign with this PEM private key (offline use)");
  approve->add_option("--module", appr.module, "sign on your PKCS#11 token: the module path");
  approve->add_option("--token-label", appr.token_label, "the token's label");
  approve->add_option("--token-serial", appr.token_serial, "or its serial number");
  approve->add_option("--key-label", appr.key_label, "label of your approval key on the token")->capture_default_str();
  approve->add_option("--pin-file", appr.pin_file, "read the token PIN from this file (else it is asked for)");
  approve->add_flag("--yes", appr.yes, "approve without asking for confirmation");
  approve->callback([&] { status = cmd_admin_approve(g, appr); });

  ImportOptions imp;
  auto* import = app.add_subcommand("import", "BYOK: wrap a raw key for an import job with OpenSSL and import it");
  import->add_option("job", imp.job, "import job id")->required();
  import->add_option("--key-file", imp.key_file, "the 32-byte key material (raw bytes)");
  import->add_option("--transport-key-file", imp.transport_key_file, "method aes-kwp: the transport key's raw bytes");
  import->add_flag("--print-recipe", imp.print_recipe, "print the openssl commands for this job instead");
  import->add_flag("!--no-kcv", imp.send_kcv, "do not send the KCV for the daemon to check");
  import->callback([&] { status = cmd_import(g, imp); });
  MigrateStateOptions migrate;
  auto* migrate_state = admin->add_subcommand(
      "migrate-state", "copy a host's SQLite state into an empty PostgreSQL state store (custodyd stopped)");
  migrate_state->add_option("--from", migrate.from, "the SQLite state.db")->required();
  migrate_state->add_option("--dsn", migrate.dsn, "libpq connection string of the target (no password)")->required();
  migrate_state->add_option("--password-file", migrate.password_file, "the target's password (mode 0400/0600)");
  migrate_state->callback([&] { status = cmd_migrate_state(migrate); });
  admin->add_subcommand("import-jobs", "import jobs and the methods the token offers")->callback([&] {
    status = cmd_import_jobs(g);
  });

  app.add_subcommand("health", "the daemon's health; exit 0 when ok or degraded")->callback([&] { status = cmd_health(g); });

  auto* audit = app.add_subcommand("audit", "audit log tools");
  audit->require_subcommand(1);
  VerifyOptions ver;
  auto* verify = audit->add_subcommand(
      "verify", "check an audit log and name the first bad record");
  verify->footer(
      "What each check detects:\n"
      "  always            the hash chain: a record changed, removed, inserted or reordered before the\n"
      "                    last record, and a last record cut short. It cannot see whole records cut off\n"
      "                    the end (the shorter log is a valid chain) nor a log rewritten from its\n"
      "                    start with a recomputed chain.\n"
      "  --public-key      every checkpoint's signature: a chain rewritten without the attestation key\n"
      "                    fails at the next checkpoint. Records after the last checkpoint are covered\n"
      "                    by the chain alone.\n"
      "  --expect-seq N    the log reaches seq N (a sequence you recorded earlier): records cut off the\n"
      "                    end before N are detected.\n"
      "  --against-attestation\n"
      "                    fetches a fresh attestation from the daemon (service socket), checks its\n"
      "                    signature (with --public-key when given, else with the key it carries), and\n"
      "                    checks that the log reaches the attested audit sequence and that the record\n"
      "                    there hashes to the attested head: detects records cut off the end or\n"
      "                    replaced up to the moment of the attestation. Give the live file.");
  verify->add_option("files", ver.files, "audit log file(s), oldest first (a rotated log is one chain)")->required();
  verify->add_option("--public-key", ver.public_key_file, "the attestation public key (PEM) that signs checkpoints");
  verify->add_option("--expect-seq", ver.expect_seq, "fail unless the log reaches this sequence number");
  verify->add_flag("--against-attestation", ver.against_attestation,
                   "fail unless the log reaches the audit sequence and head a fresh attestation reports");
  verify->callback([&] { status = cmd_audit_verify(g, ver); });

  TailOptions tail_o;
  tail_o.log = default_audit_log();
  auto* tail = audit->add_subcommand(
      "tail", "print the newest audit records, checking the chain; -f follows the log across rotations");
  tail->add_option("--log", tail_o.log, "the live audit log (audit.path; env CUSTODY_AUDIT_LOG)")->capture_default_str();
  tail->add_flag("-f,--follow", tail_o.follow, "keep printing records as they are written, until interrupted");
  tail->add_option("-n,--lines", tail_o.lines, "how many existing records to print first")->capture_default_str();
  tail->add_option("--public-key", tail_o.public_key_file, "also check checkpoint signatures with this key (PEM)");
  tail->footer(
      "The chain is checked from the live file's first record; a break stops the tail with an error\n"
      "line and exit status 4. --json prints each record as written.");
  tail->callback([&] { status = cmd_audit_tail(g, tail_o); });

  auto* report = app.add_subcommand("report", "reports from the audit log");
  report->require_subcommand(1);
  UsageOptions usage_o;
  usage_o.log = default_audit_log();
  auto* usage = report->add_subcommand(
      "usage", "who used which key: operations per key and version, by peer uid and result, from the audit log");
  usage->add_option("--log", usage_o.log,
                    "the live audit log (audit.path; env CUSTODY_AUDIT_LOG); its rotated files PATH.<seq> are read too")
      ->capture_default_str();
  usage->add_option("--since", usage_o.since, "only records from then on: a duration back from now (90d, 12h) or a UTC "
                                              "date (2026-10-01 or 2026-10-01T12:00:00Z)");
  usage->add_option("--key", usage_o.keys, "only this key (repeatable)");
  usage->add_option("--public-key", usage_o.public_key_file, "also check checkpoint signatures with this key (PEM)");
  usage->add_flag("--allow-broken-chain", usage_o.allow_broken_chain,
                  "report the records before a chain break instead of refusing (exit status 4 otherwise)");
  usage->callback([&] { status = cmd_report_usage(g, usage_o); });

  AttestOptions att;
  auto* attest = app.add_subcommand("attest", "fetch a signed attestation report, check it and summarize it");
  attest->add_option("--nonce", att.nonce_b64, "base64 nonce to bind (default: 32 random bytes)");
  attest->add_option("--key", att.keys, "only this key (repeatable)");
  attest->add_option("--public-key", att.public_key_file, "verify with this pinned public key (PEM)");
  attest->add_option("--out-report", att.out_report, "save the exact signed report bytes");
  attest->add_option("--out-signature", att.out_signature, "save the DER signature");
  attest->add_option("--out-public-key", att.out_public_key, "save the daemon's public key (PEM)");
  attest->callback([&] {
    if (attest->get_subcommands().empty()) status = cmd_attest(g, att);
  });
  attest->add_subcommand("key", "print the attestation public key and its key_id")->callback([&] { status = cmd_attest_key(g); });

  // The AWS KMS External Key Store (docs/xks.md): the proxy configuration file for the KMS console.
  XksCredentialsOptions xks_o;
  xks_o.config_path = env_or("CUSTODY_CONFIG", "/etc/custody/custodyd.yaml");
  auto* xks = app.add_subcommand("xks", "AWS KMS External Key Store proxy");
  xks->require_subcommand(1);
  auto* xks_credentials = xks->add_subcommand(
      "credentials", "print the proxy configuration file for the KMS console (XksProxyUriPath, credential)");
  xks_credentials->add_option("--config", xks_o.config_path, "custodyd's configuration (env CUSTODY_CONFIG)")->capture_default_str();
  xks_credentials->add_option("--access-key-id", xks_o.access_key_id, "which of xks.credentials (default: the first)");
  xks_credentials->add_option("--endpoint", xks_o.endpoint, "also print XksProxyUriEndpoint, e.g. https://xks.example.com");
  xks_credentials->callback([&] { status = cmd_xks_credentials(xks_o); });

  // Recovery (CONTRACT §11; docs/recovery.md): the ceremony on the tokens, bundles and the drill.
  auto* recovery = app.add_subcommand("recovery", "backup and disaster recovery without plaintext");
  recovery->require_subcommand(1);
  auto add_token = [](CLI::App* cmd, TokenOptions& t, const char* pin_option, const char* pin_help) {
    cmd->add_option("--module", t.module, "the PKCS#11 module path")->required();
    cmd->add_option("--token-label", t.token_label, "the token's label");
    cmd->add_option("--token-serial", t.token_serial, "or its serial number");
    cmd->add_option(pin_option, t.pin_file, pin_help);
  };
  RecoveryInitOptions rinit;
  auto* rinit_cmd = recovery->add_subcommand(
      "init", "recovery (DR) side: make the recovery RSA key pair in the recovery token; prints its public key");
  add_token(rinit_cmd, rinit.token, "--pin-file", "the recovery token's user PIN, from this file (else asked for)");
  rinit_cmd->add_option("--bits", rinit.bits, "RSA modulus size, at least 3072")->capture_default_str();
  rinit_cmd->add_option("--out", rinit.out, "write the public key (PEM) here instead of stdout");
  rinit_cmd->callback([&] { status = cmd_recovery_init(g, rinit); });
  RecoveryTrustOptions rtrust;
  auto* rtrust_cmd = recovery->add_subcommand(
      "trust", "primary side, by the token's Security Officer: import the recovery public key as a trusted wrapping key");
  rtrust_cmd->add_option("public_key", rtrust.public_key_file, "the recovery public key (PEM) from recovery init")->required();
  add_token(rtrust_cmd, rtrust.token, "--so-pin-file", "the primary token's SO PIN, from this file (else asked for)");
  rtrust_cmd->callback([&] { status = cmd_recovery_trust(g, rtrust); });
  std::string rexp_id, rexp_out;
  auto* rexp = recovery->add_subcommand(
      "export", "write the bundle an executed export-recovery-bundle request made to a file (admin socket)");
  rexp->add_option("bundle_id", rexp_id, "the id in the request's result (recovery_bundle.id)")->required();
  rexp->add_option("--out", rexp_out, "the bundle file")->required();
  rexp->callback([&] { status = cmd_recovery_export(g, rexp_id, rexp_out); });
  std::string rb_file, rb_key;
  auto* rimp = recovery->add_subcommand(
      "import", "recovery (DR) side: propose import-recovery-bundle with a bundle file (admin socket; needs approvals)");
  rimp->add_option("bundle", rb_file, "the bundle file")->required();
  rimp->add_option("--attestation-key", rb_key, "the primary's attestation public key (PEM), pinned")->required();
  rimp->callback([&] { status = cmd_recovery_import(g, rb_file, rb_key); });
  auto* rver = recovery->add_subcommand(
      "verify", "the recovery drill: unwrap each version into session objects, check, destroy; changes nothing");
  rver->add_option("bundle", rb_file, "the bundle file")->required();
  rver->add_option("--attestation-key", rb_key, "the primary's attestation public key (PEM), pinned")->required();
  rver->callback([&] { status = cmd_recovery_verify(g, rb_file, rb_key); });
  std::string backup_out;
  auto* backup = admin->add_subcommand(
      "backup-state", "copy the daemon's state database, consistently while it serves, to a new file (mode 0600)");
  backup->add_option("file", backup_out, "the new file")->required();
  backup->callback([&] { status = cmd_admin_backup_state(g, backup_out); });

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? kOk : kUsage;
  }
  return status;
}
