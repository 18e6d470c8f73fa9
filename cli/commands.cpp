#include "cli/commands.h"
#include "cli/local_input.h"

#include <unistd.h>

#include <boost/json.hpp>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <iterator>
#include <memory>
#include <sstream>

#include "cli/approval_signer.h"
#include "common/admin_operations.h"
#include "common/base64.h"
#include "common/byok_payload.h"
#include "common/hex.h"
#include "common/pem.h"
#include "custody/client.h"
#include "daemon/core/audit/audit_verify.h"
#include "daemon/core/crypto/blob_codec.h"
#include "daemon/core/crypto/encryption_context.h"
#include "daemon/core/keys/data_plane.h"
#include "daemon/core/keys/key.h"

namespace custody::cli {
namespace {

namespace json = boost::json;

std::optional<std::string> read_input(const Input& in) {
  if (in.text) return *in.text;
  std::ostringstream ss;
  if (in.file == "-") {
    ss << std::cin.rdbuf();
  } else {
    std::ifstream f(in.file, std::ios::binary);
    if (!f) {
      std::cerr << "custodyctl: cannot read " << in.file << '\n';
      return std::nullopt;
    }
    ss << f.rdbuf();
  }
  return ss.str();
}

std::string trim(std::string s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.pop_back();
  std::size_t i = 0;
  while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i]))) ++i;
  return s.substr(i);
}

// Checked here against the limits of CONTRACT §3, so that a mistake costs no round trip and is
// reported as the caller's (exit 2), not as the daemon's refusal.
std::optional<json::object> parse_context(const std::vector<std::string>& pairs) {
  json::object ctx;
  if (pairs.size() > core::kMaxContextPairs) {
    std::cerr << "custodyctl: at most " << core::kMaxContextPairs << " --context pairs\n";
    return std::nullopt;
  }
  for (const auto& p : pairs) {
    auto eq = p.find('=');
    if (eq == std::string::npos || eq == 0) {
      std::cerr << "custodyctl: --context takes key=value, got '" << p << "'\n";
      return std::nullopt;
    }
    if (eq > core::kMaxContextKey || p.size() - eq - 1 > core::kMaxContextValue) {
      std::cerr << "custodyctl: a --context key is 1.." << core::kMaxContextKey << " bytes and a value 0.."
                << core::kMaxContextValue << " bytes\n";
      return std::nullopt;
    }
    if (ctx.contains(p.substr(0, eq))) {
      std::cerr << "custodyctl: --context names '" << p.substr(0, eq) << "' twice\n";
      return std::nullopt;
    }
    ctx[p.substr(0, eq)] = p.substr(eq + 1);
  }
  return ctx;
}

bool valid_key_argument(const std::string& key) {
  if (core::valid_key_name(key)) return true;
  std::cerr << "custodyctl: '" << key << "' is not a key name (^[a-z0-9][a-z0-9._-]{0,62}$)\n";
  return false;
}

// A ciphertext must be base64 of a version 1 blob (CONTRACT §4) made with this key.
std::optional<std::string> checked_ciphertext(const std::string& key, const std::string& input) {
  std::string text = trim(input);
  auto raw = base64_decode(text);
  if (!raw || raw->empty()) {
    std::cerr << "custodyctl: the ciphertext is not base64 (standard alphabet, with padding)\n";
    return std::nullopt;
  }
  auto blob = core::parse_blob(*raw);
  if (!blob) {
    std::cerr << "custodyctl: not a custody ciphertext: " << blob.error().message << '\n';
    return std::nullopt;
  }
  if (blob->key_name != key) {
    std::cerr << "custodyctl: the ciphertext was made with key '" << blob->key_name << "', not '" << key << "'\n";
    return std::nullopt;
  }
  return text;
}

struct Outcome {
  int exit = kOk;
  json::value body;
};

// Says why a request failed (the daemon's error, raw with --json) and maps it to the exit status.
int report_failure(const Globals& g, const client::Error& e) {
  if (!e.from_daemon()) {
    std::cerr << "custodyctl: " << e.message << " (is custodyd running? set --socket or CUSTODY_SERVICE_SOCKET)\n";
    return kUnavailable;
  }
  if (g.json)
    std::cout << e.body << '\n';
  else
    std::cerr << "custodyctl: " << client::to_string(e.code) << ": " << e.message << " (request " << e.request_id << ")\n";
  return e.http_status >= 500 ? kUnavailable : kRefused;
}

// Sends the request through custody::client; prints the daemon's error (or the raw body with --json).
Outcome send(const Globals& g, const std::string& socket, const std::string& method, const std::string& target,
             const json::value* body = nullptr) {
  client::Client custody({.socket_path = socket});
  // Only reads are sent again after a failure: a repeated POST could run twice.
  auto reply = custody.request(method, target, body ? json::serialize(*body) : "", method == "GET");
  if (!reply) return {report_failure(g, reply.error()), {}};
  if (g.json) std::cout << reply->body.view() << '\n';
  boost::system::error_code ec;
  json::value v = json::parse(reply->body.view(), ec);
  return {kOk, std::move(v)};
}

std::string str(const json::value& v, const char* key) { return json::value_to<std::string>(v.at(key)); }

int write_output(const std::optional<std::string>& out, const std::string& data, bool newline) {
  if (out && *out != "-") {
    std::ofstream f(*out, std::ios::binary | std::ios::trunc);
    f << data;
    if (!f) {
      std::cerr << "custodyctl: cannot write " << *out << '\n';
      return kUsage;
    }
    return kOk;
  }
  std::cout << data;
  if (newline) std::cout << '\n';
  return kOk;
}

std::string key_path(const std::string& key, const char* op) { return "/v1/keys/" + key + "/" + op; }

}  // namespace

int cmd_wrap(const Globals& g, const DataOptions& o) {
  if (!valid_key_argument(o.key)) return kUsage;
  auto data = read_input(o.input);
  auto ctx = parse_context(o.context);
  if (!data || !ctx) return kUsage;
  if (data->empty() || data->size() > core::kMaxWrapPlaintext) {
    std::cerr << "custodyctl: the plaintext is " << data->size() << " bytes; wrap takes 1.." << core::kMaxWrapPlaintext
              << " (for more, wrap a data key: custodyctl datakey)\n";
    return kUsage;
  }
  json::value body = {{"plaintext", base64_encode(to_bytes(*data))}, {"context", *ctx}};
  auto r = send(g, g.service_socket, "POST", key_path(o.key, "wrap"), &body);
  if (r.exit != kOk || g.json) return r.exit;
  return write_output(o.out, str(r.body, "ciphertext"), true);
}

int cmd_unwrap(const Globals& g, const DataOptions& o, bool base64_output) {
  if (!valid_key_argument(o.key)) return kUsage;
  auto data = read_input(o.input);
  auto ctx = parse_context(o.context);
  if (!data || !ctx) return kUsage;
  auto ciphertext = checked_ciphertext(o.key, *data);
  if (!ciphertext) return kUsage;
  json::value body = {{"ciphertext", *ciphertext}, {"context", *ctx}};
  auto r = send(g, g.service_socket, "POST", key_path(o.key, "unwrap"), &body);
  if (r.exit != kOk || g.json) return r.exit;
  if (base64_output) return write_output(o.out, str(r.body, "plaintext"), true);
  auto plain = base64_decode(str(r.body, "plaintext"));
  if (!plain) return kUnavailable;
  return write_output(o.out, std::string(plain->begin(), plain->end()), false);
}

int cmd_rewrap(const Globals& g, const DataOptions& o) {
  if (!valid_key_argument(o.key)) return kUsage;
  auto data = read_input(o.input);
  auto ctx = parse_context(o.context);
  if (!data || !ctx) return kUsage;
  auto ciphertext = checked_ciphertext(o.key, *data);
  if (!ciphertext) return kUsage;
  json::value body = {{"ciphertext", *ciphertext}, {"context", *ctx}};
  auto r = send(g, g.service_socket, "POST", key_path(o.key, "rewrap"), &body);
  if (r.exit != kOk || g.json) return r.exit;
  return write_output(o.out, str(r.body, "ciphertext"), true);
}

int cmd_datakey(const Globals& g, const std::string& key, unsigned length, const std::vector<std::string>& context,
                bool include_plaintext) {
  auto ctx = parse_context(context);
  if (!valid_key_argument(key) || !ctx) return kUsage;
  json::value body = {{"length", length}, {"context", *ctx}, {"include_plaintext", include_plaintext}};
  auto r = send(g, g.service_socket, "POST", key_path(key, "datakey"), &body);
  if (r.exit != kOk || g.json) return r.exit;
  if (include_plaintext) std::cout << "plaintext: " << str(r.body, "plaintext") << '\n';
  std::cout << "ciphertext: " << str(r.body, "ciphertext") << '\n'
            << "key_version: " << r.body.at("key_version") << '\n';
  return kOk;
}

int cmd_derive(const Globals& g, const std::string& key, const Input& info, bool info_is_base64, unsigned length,
               std::optional<unsigned> version, bool hex_output) {
  if (!valid_key_argument(key)) return kUsage;
  std::string info_b64;
  if (info.text || info.file != "-") {
    auto data = read_input(info);
    if (!data) return kUsage;
    info_b64 = info_is_base64 ? trim(*data) : base64_encode(to_bytes(*data));
    auto raw = base64_decode(info_b64);
    if (!raw) {
      std::cerr << "custodyctl: --info-base64 was given but the info is not base64\n";
      return kUsage;
    }
    if (raw->size() > core::kMaxDeriveInfo) {
      std::cerr << "custodyctl: the info is " << raw->size() << " bytes; derive takes at most " << core::kMaxDeriveInfo
                << '\n';
      return kUsage;
    }
  }
  json::object body{{"info", info_b64}, {"length", length}};
  if (version) body["version"] = *version;
  json::value v = body;
  auto r = send(g, g.service_socket, "POST", key_path(key, "derive"), &v);
  if (r.exit != kOk || g.json) return r.exit;
  if (!hex_output) return write_output(std::nullopt, str(r.body, "key"), true);
  auto raw = base64_decode(str(r.body, "key"));
  return write_output(std::nullopt, raw ? hex_lower(*raw) : "", true);
}

int cmd_keys_list(const Globals& g) {
  auto r = send(g, g.service_socket, "GET", "/v1/keys");
  if (r.exit != kOk || g.json) return r.exit;
  for (const auto& k : r.body.at("keys").as_array())
    std::cout << str(k, "name") << "\t" << str(k, "algorithm") << "\t" << str(k, "state") << "\tv"
              << k.at("current_version") << '\n';
  return kOk;
}

int cmd_keys_show(const Globals& g, const std::string& key) {
  if (!valid_key_argument(key)) return kUsage;
  auto r = send(g, g.service_socket, "GET", "/v1/keys/" + key);
  if (r.exit != kOk || g.json) return r.exit;
  const auto& k = r.body;
  std::cout << "name:            " << str(k, "name") << "\nalgorithm:       " << str(k, "algorithm")
            << "\nstate:           " << str(k, "state") << "\ncurrent_version: " << k.at("current_version")
            << "\nmin_decrypt:     " << k.at("min_decrypt_version") << "\nversions:\n";
  for (const auto& v : k.at("versions").as_array())
    std::cout << "  v" << v.at("version") << "  " << str(v, "state") << "  " << str(v, "origin") << "  "
              << str(v, "created_at") << "  kcv " << (v.at("kcv").is_null() ? "-" : str(v, "kcv")) << '\n';
  std::cout << "policy: " << json::serialize(k.at("policy")) << '\n';
  return kOk;
}

namespace {

std::string approvals_text(const json::value& req) {
  std::string names;
  for (const auto& a : req.at("approvals").as_array()) names += (names.empty() ? "" : ", ") + str(a, "operator");
  return std::to_string(req.at("approvals").as_array().size()) + " of " + std::to_string(req.at("required").to_number<int>()) +
         (names.empty() ? "" : " (" + names + ")");
}

// What a request does, in words, for the operator who is asked to sign it.
std::string describe_operation(const json::value& req) {
  const std::string op = str(req, "operation");
  const auto& p = req.at("params");
  const std::string name = p.as_object().contains("name") ? str(p, "name") : "";
  if (op == "create-key")
    return "create key '" + name + "' (" + str(p, "algorithm") + ") with policy " +
           (p.as_object().contains("policy") ? json::serialize(p.at("policy")) : "[]");
  if (op == "rotate-key") return "add a new current version to key '" + name + "'";
  if (op == "disable-key") return "DISABLE key '" + name + "': every service using it will fail until it is enabled";
  if (op == "enable-key") return "enable key '" + name + "' again";
  if (op == "set-policy") return "replace the policy of key '" + name + "' with " + json::serialize(p.at("policy"));
  if (op == "set-min-decrypt-version")
    return "RETIRE versions of key '" + name + "' below " + json::serialize(p.at("version")) +
           ": their ciphertexts will no longer unwrap, and this cannot be undone";
  if (op == "schedule-destruction")
    return "DESTROY key '" + name + "' (every version) after " + json::serialize(p.at("wait_seconds")) +
           " seconds: its ciphertexts can never be decrypted again";
  if (op == "cancel-destruction") return "cancel the destruction of key '" + name + "' (it stays disabled)";
  if (op == "create-import-job")
    return "open a BYOK import job (" + json::serialize(p.at("method")) + ") for key " + json::serialize(p.at("key_name")) +
           " (" + json::serialize(p.at("algorithm")) + "): key material from outside will be accepted into the token";
  return op + " " + json::serialize(p);
}

void print_request(const json::value& req) {
  std::cout << "request " << str(req, "id") << "\n  operation: " << str(req, "operation")
            << "\n  does:      " << describe_operation(req) << "\n  state:     " << str(req, "state")
            << "\n  approvals: " << approvals_text(req) << "\n  expires:   " << str(req, "expires_at") << '\n';
  if (const auto* result = req.as_object().if_contains("result"); result && !result->is_null())
    std::cout << "  result:    " << json::serialize(*result) << '\n';
  if (req.as_object().contains("error"))
    std::cout << "  error:     " << str(req.at("error"), "code") << ": " << str(req.at("error"), "message") << '\n';
}

// Proposes an admin request and says what it needs next.
int admin_request(const Globals& g, const std::string& operation, json::object params) {
  json::value body = {{"operation", operation}, {"params", std::move(params)}};
  auto r = send(g, g.admin_socket, "POST", "/v1/admin/requests", &body);
  if (r.exit != kOk || g.json) return r.exit;
  const auto& req = r.body.at("request");
  print_request(req);
  std::cout << "Each operator approves with:\n  custodyctl admin approve " << str(req, "id")
            << " --operator NAME (--module PKCS11.so --token-label LABEL | --key-file KEY.pem)\n";
  return kOk;
}

}  // namespace

int cmd_keys_create(const Globals& g, const CreateOptions& o) {
  if (!valid_key_argument(o.key)) return kUsage;
  if (o.algorithm != "aes-256-gcm" && o.algorithm != "hmac-sha256") {
    std::cerr << "custodyctl: --algorithm is aes-256-gcm or hmac-sha256\n";
    return kUsage;
  }
  // Refused rather than warned about: a key without a policy serves nobody, and finding that out
  // at first use costs a second two-operator ceremony (set-policy).
  if (!o.policy_json && !o.no_policy) {
    std::cerr << "custodyctl: --policy is required: a key with an empty policy may be used by nobody.\n"
                 "  e.g. --policy '[{\"uid\":1000,\"operations\":[\"wrap\",\"unwrap\",\"datakey\",\"rewrap\"]}]'\n"
                 "  (pass --no-policy to create it anyway and grant use later with admin propose set-policy)\n";
    return kUsage;
  }
  boost::system::error_code ec;
  auto policy = json::parse(o.policy_json.value_or("[]"), ec);
  if (ec || !policy.is_array()) {
    std::cerr << "custodyctl: --policy must be a JSON list of rules" << (ec ? ": " + ec.message() : std::string())
              << '\n';
    return kUsage;
  }
  if (policy.as_array().empty() && !o.no_policy)
    std::cerr << "custodyctl: warning: the policy is empty: nobody may use key '" << o.key
              << "' until an operator sets one (admin propose set-policy)\n";
  json::object params{{"name", o.key}, {"algorithm", o.algorithm}, {"policy", policy}};
  if (o.rotation_period) params["rotation_period"] = *o.rotation_period;
  if (o.usage_limit) params["usage_limit"] = *o.usage_limit;
  if (o.recovery) params["recovery"] = true;
  return admin_request(g, "create-key", std::move(params));
}

int cmd_key_operation(const Globals& g, const std::string& operation, const std::string& key,
                      const std::vector<std::pair<std::string, std::uint64_t>>& numbers) {
  json::object params{{"name", key}};
  for (const auto& [name, value] : numbers) params[name] = value;
  return admin_request(g, operation, std::move(params));
}

int cmd_keys_check(const Globals& g) {
  auto r = send(g, g.admin_socket, "POST", "/v1/admin/keys/check");
  if (r.exit != kOk || g.json) return r.exit;
  for (const char* kind : {"missing", "altered", "strays"})
    for (const auto& item : r.body.at(kind).as_array()) std::cout << kind << ": " << item.as_string() << '\n';
  const bool clean = r.body.at("clean").as_bool();
  std::cout << (clean ? "every key version matches its token object\n" : "the token and the state disagree (see above)\n");
  return clean ? kOk : kVerifyFailed;
}

int cmd_admin_propose(const Globals& g, const std::string& operation, const std::string& params_json) {
  boost::system::error_code ec;
  if (!is_admin_operation(operation)) {
    std::cerr << "custodyctl: unknown operation '" << operation << "'; one of " << admin_operation_list() << '\n';
    return kUsage;
  }
  auto params = json::parse(params_json, ec);
  if (ec || !params.is_object()) {
    std::cerr << "custodyctl: --params must be a JSON object\n";
    return kUsage;
  }
  return admin_request(g, operation, params.as_object());
}

int cmd_admin_list(const Globals& g) {
  auto r = send(g, g.admin_socket, "GET", "/v1/admin/requests");
  if (r.exit != kOk || g.json) return r.exit;
  for (const auto& item : r.body.at("requests").as_array()) {
    const auto& req = item.at("request");
    std::cout << str(req, "id") << "  " << str(req, "state") << "  " << str(req, "operation") << "  "
              << approvals_text(req) << "  expires " << str(req, "expires_at") << '\n';
  }
  return kOk;
}

int cmd_admin_show(const Globals& g, const std::string& id) {
  auto r = send(g, g.admin_socket, "GET", "/v1/admin/requests/" + id);
  if (r.exit != kOk || g.json) return r.exit;
  print_request(r.body.at("request"));
  auto challenge = base64_decode(str(r.body, "challenge"));
  if (challenge) std::cout << "  challenge: " << std::string(challenge->begin(), challenge->end()) << '\n';
  return kOk;
}

int cmd_admin_cancel(const Globals& g, const std::string& id) {
  auto r = send(g, g.admin_socket, "POST", "/v1/admin/requests/" + id + "/cancel");
  if (r.exit != kOk || g.json) return r.exit;
  print_request(r.body.at("request"));
  return kOk;
}

namespace {


enum class Answer { yes, no, none };

Answer confirmation() {
  std::cout << "Sign and approve this request? [y/N] " << std::flush;
  std::string answer;
  if (!std::getline(std::cin, answer)) return Answer::none;
  return answer == "y" || answer == "Y" || answer == "yes" ? Answer::yes : Answer::no;
}

}  // namespace

int cmd_admin_approve(const Globals& g, const ApproveOptions& o) {
  if (!o.key_file == !o.module) {
    std::cerr << "custodyctl: sign with either --key-file or --module (the operator's PKCS#11 token)\n";
    return kUsage;
  }
  Globals quiet = g;
  quiet.json = false;
  auto r = send(quiet, g.admin_socket, "GET", "/v1/admin/requests/" + o.id);
  if (r.exit != kOk) return r.exit;
  const auto& req = r.body.at("request");
  auto challenge = base64_decode(str(r.body, "challenge"));
  if (!challenge) return kUnavailable;
  const std::string challenge_text(challenge->begin(), challenge->end());
  // The operator signs what they read: the summary comes from the exact challenge bytes.
  auto signed_view = json::parse(challenge_text);
  if (str(signed_view, "id") != o.id || signed_view.at("operation") != req.at("operation") ||
      signed_view.at("params") != req.at("params")) {
    std::cerr << "custodyctl: the challenge does not describe this request; refusing to sign\n";
    return kVerifyFailed;
  }
  print_request(req);
  if (str(req, "state") != "pending") {
    std::cerr << "custodyctl: the request is " << str(req, "state") << "; nothing to approve\n";
    return kRefused;
  }
  if (!o.yes) {
    switch (confirmation()) {
      case Answer::yes: break;
      case Answer::no:
        std::cerr << "custodyctl: not approved (declined)\n";
        return kDeclined;
      case Answer::none:
        std::cerr << "\ncustodyctl: not approved: no answer on standard input (no terminal?); pass --yes to approve "
                     "without the prompt\n";
        return kUsage;
    }
  }
  Expected<Bytes, std::string> signature = unexpected(std::string("no key"));
  if (o.key_file) {
    signature = client::sign_with_key_file(*o.key_file, challenge_text);
  } else {
    auto pin = read_pin(o.pin_file, "Token PIN: ");
    if (!pin) {
      std::cerr << "custodyctl: cannot read the PIN (use --pin-file)\n";
      return kUsage;
    }
    signature = client::sign_with_token({*o.module, o.token_label, o.token_serial, o.key_label, std::move(*pin)}, challenge_text);
  }
  if (!signature) {
    std::cerr << "custodyctl: cannot sign: " << signature.error() << '\n';
    return kUsage;
  }
  json::value body = {{"operator", o.operator_name}, {"signature", base64_encode(*signature)}};
  auto done = send(g, g.admin_socket, "POST", "/v1/admin/requests/" + o.id + "/approvals", &body);
  if (done.exit != kOk || g.json) return done.exit;
  const auto& after = done.body.at("request");
  std::cout << "approved by " << o.operator_name << "; request is now " << str(after, "state") << " ("
            << approvals_text(after) << ")\n";
  if (after.as_object().contains("error"))
    std::cout << "error: " << str(after.at("error"), "code") << ": " << str(after.at("error"), "message") << '\n';
  return str(after, "state") == "failed" ? kRefused : kOk;
}

int cmd_health(const Globals& g) {
  client::Client custody({.socket_path = g.service_socket});
  auto health = custody.health();
  if (!health) {
    std::cerr << "custodyctl: " << health.error().describe() << '\n';
    return kUnavailable;
  }
  if (g.json) {
    std::cout << health->body << '\n';
  } else {
    auto v = json::parse(health->body);
    std::cout << "status: " << str(v, "status") << "\ntoken:  " << str(v.at("token"), "label")
              << (v.at("token").at("available").as_bool() ? " (available)" : " (UNAVAILABLE)") << "\naudit:  "
              << str(v.at("audit"), "path") << (v.at("audit").at("writable").as_bool() ? " (writable" : " (NOT WRITABLE")
              << ", seq " << v.at("audit").at("sequence") << ")\n";
    if (v.as_object().contains("keys")) std::cout << "keys:   " << v.at("keys") << '\n';
  }
  return health->http_status == 200 ? kOk : kUnavailable;
}

namespace {

std::optional<std::string> read_text_file(const std::string& path) {
  auto text = read_text(path);
  if (!text) std::cerr << "custodyctl: cannot read " << path << '\n';
  return text;
}

void save(const std::optional<std::string>& path, const std::string& data) {
  if (!path) return;
  std::ofstream(*path, std::ios::binary | std::ios::trunc) << data;
}

// A fetched attestation, what checking it found, and the report parsed (null when it is not JSON).
struct FetchedAttestation : client::Attestation {
  json::value doc;
};

// Fetches an attestation for a fresh nonce (or the one given) and checks it: with the pinned key
// when one is given, else with the key it carries. The exit status on failure to fetch.
Expected<FetchedAttestation, int> fetch_attestation(const Globals& g, const std::optional<std::string>& nonce_b64,
                                                    const std::vector<std::string>& keys,
                                                    const std::optional<std::string>& pinned_pem) {
  client::AttestOptions options{std::nullopt, keys, pinned_pem};
  if (nonce_b64) {
    auto raw = base64_decode(*nonce_b64);
    if (!raw || raw->size() > 64) {
      std::cerr << "custodyctl: --nonce is base64 of 0..64 bytes\n";
      return unexpected(int{kUsage});
    }
    options.nonce = Bytes(raw->begin(), raw->end());
  }
  client::Client custody({.socket_path = g.service_socket});
  auto fetched = custody.fetch_attestation(options);
  if (!fetched) {
    const auto& e = fetched.error();
    if (e.code == client::ErrorCode::bad_reply) {
      std::cerr << "custodyctl: the daemon's answer is not an attestation envelope\n";
      return unexpected(int{kVerifyFailed});
    }
    Globals quiet = g;
    quiet.json = false;
    return unexpected(report_failure(quiet, e));
  }
  FetchedAttestation a{std::move(*fetched), nullptr};
  boost::system::error_code ec;
  a.doc = json::parse(a.report, ec);
  if (ec || !a.doc.is_object()) a.doc = nullptr;
  return a;
}

// Why an attestation cannot be trusted, said before anything taken from it.
void print_untrusted(const FetchedAttestation& a, bool pinned) {
  if (!a.signature_ok)
    std::cerr << "custodyctl: ATTESTATION NOT VERIFIED: the report's signature does not verify with "
              << (pinned ? "the pinned public key (--public-key)" : "the public key sent with it")
              << "; nothing in it can be trusted, so it is not summarized (--out-report saves it)\n";
  else if (!a.nonce_ok)
    std::cerr << "custodyctl: ATTESTATION NOT FRESH: the report does not echo the nonce sent; it may be a replay, "
                 "so it is not summarized (--out-report saves it)\n";
}

}  // namespace

int cmd_audit_verify(const Globals& g, const VerifyOptions& o) {
  std::vector<std::unique_ptr<std::ifstream>> streams;
  std::vector<std::istream*> inputs;
  for (const auto& f : o.files) {
    streams.push_back(std::make_unique<std::ifstream>(f, std::ios::binary));
    if (!*streams.back()) {
      std::cerr << "custodyctl: cannot read " << f << '\n';
      return kUsage;
    }
    inputs.push_back(streams.back().get());
  }
  std::string pem;
  if (!o.public_key_file.empty()) {
    auto text = read_text_file(o.public_key_file);
    if (!text) return kUsage;
    pem = std::move(*text);
  }
  std::vector<core::AuditExpectation> expectations;
  if (o.expect_seq) expectations.push_back({*o.expect_seq, std::nullopt, "--expect-seq"});
  if (o.against_attestation) {
    // Fetched before the log is read: every record the attestation counts is then on disk.
    auto a = fetch_attestation(g, std::nullopt, {}, pem.empty() ? std::nullopt : std::optional(pem));
    if (!a) return a.error();
    if (!a->trusted()) {
      print_untrusted(*a, !pem.empty());
      return kVerifyFailed;
    }
    const auto* audit = a->doc.as_object().if_contains("audit");
    const auto* seq = audit && audit->is_object() ? audit->as_object().if_contains("sequence") : nullptr;
    const auto* head = audit && audit->is_object() ? audit->as_object().if_contains("head") : nullptr;
    boost::system::error_code ec;
    const std::uint64_t attested = seq && seq->is_number() ? seq->to_number<std::uint64_t>(ec) : 0;
    if (!seq || ec || !head || !head->is_string()) {
      std::cerr << "custodyctl: the attestation carries no audit sequence and head\n";
      return kVerifyFailed;
    }
    expectations.push_back({attested, std::string(head->as_string()), "the attestation"});
    if (pem.empty())
      std::cerr << "custodyctl: note: the attestation was checked with the key it carries; pin it with --public-key\n";
  }
  auto r = core::verify_audit_log(inputs, pem, expectations);
  if (g.json) {
    json::object out{{"ok", r.ok}, {"records", r.records}, {"checkpoints", r.checkpoints}, {"head", r.head},
                     {"after_last_checkpoint", r.after_last_checkpoint}, {"first_seq", r.first_seq},
                     {"last_seq", r.last_seq}};
    if (!expectations.empty()) out["expected_seq"] = expectations.back().sequence;
    if (!r.ok) {
      out["first_bad_line"] = r.first_bad_line;
      out["first_bad_seq"] = r.first_bad_seq;
      out["problem"] = r.problem;
      out["truncated"] = r.truncated;
    }
    std::cout << json::serialize(out) << '\n';
  } else if (r.ok) {
    std::cout << "OK: " << r.records << " records, chain head " << r.head << '\n';
    if (r.started_mid_chain)
      std::cout << "note: the log starts at seq " << r.first_seq
                << " (earlier files removed by retention or not given); the chain is checked from that record's prev\n";
    if (pem.empty())
      std::cout << "note: checkpoint signatures not checked; pass --public-key (custodyctl attest key)\n";
    else
      std::cout << r.checkpoints << " signed checkpoints verified; " << r.after_last_checkpoint
                << " records after the last one are covered by the chain only\n";
    for (const auto& e : expectations)
      std::cout << "the log reaches seq " << e.sequence << " as " << e.source << " says"
                << (e.head ? ", and that record's hash matches the attested head" : "") << '\n';
    if (expectations.empty())
      std::cout << "note: records cut off the end are not detected without --against-attestation or --expect-seq\n";
  } else if (r.truncated) {
    std::cout << "TRUNCATED: " << r.problem << " (" << r.records << " records verified)\n";
  } else {
    std::cout << "BROKEN at line " << r.first_bad_line << " (seq " << r.first_bad_seq << "): " << r.problem << " ("
              << r.records << " records verified before it)\n";
  }
  return r.ok ? kOk : kVerifyFailed;
}

int cmd_attest(const Globals& g, const AttestOptions& o) {
  std::optional<std::string> pinned;
  if (o.public_key_file) {
    pinned = read_text_file(*o.public_key_file);
    if (!pinned) return kUsage;
    if (!read_public_key_pem(*pinned)) {
      std::cerr << "custodyctl: " << *o.public_key_file << " is not a PEM public key\n";
      return kUsage;
    }
  }
  auto fetched = fetch_attestation(g, o.nonce_b64, o.keys, pinned);
  if (!fetched) return fetched.error();
  const auto& a = *fetched;
  save(o.out_report, a.report);
  save(o.out_signature, std::string(a.signature.begin(), a.signature.end()));
  save(o.out_public_key, a.public_key);
  // An unverified report is never summarized: its contents would read as if they were vouched for.
  if (!a.trusted() || !a.doc.is_object()) {
    print_untrusted(a, pinned.has_value());
    std::cout << "signature: " << (a.signature_ok ? "valid" : "INVALID") << "; nonce: " << (a.nonce_ok ? "echoed" : "MISMATCH")
              << '\n';
    return kVerifyFailed;
  }
  const auto& doc = a.doc;
  if (g.json) {
    std::cout << a.report << '\n';
    return kOk;
  }
  std::cout << "signature: valid; nonce: echoed\n"
            << "signed by key_id " << a.key_id
            << (pinned ? " (checked against the pinned public key)" : " (its own key: pin it with --public-key)") << "\n"
            << "attestation by custodyd " << str(doc.at("daemon"), "version") << " (instance "
            << str(doc.at("daemon"), "instance_id") << "), issued " << str(doc, "issued_at") << "\n"
            << "token: " << str(doc.at("token"), "label") << " (" << str(doc.at("token"), "manufacturer") << " "
            << str(doc.at("token"), "model") << ", serial " << str(doc.at("token"), "serial") << ")\n"
            << "audit: seq " << doc.at("audit").at("sequence") << ", head " << str(doc.at("audit"), "head") << "\n";
  for (const auto& k : doc.at("keys").as_array()) {
    std::cout << "key " << str(k, "name") << " (" << str(k, "algorithm") << ", " << str(k, "state") << ")\n";
    for (const auto& v : k.at("versions").as_array()) {
      const auto& attrs = v.at("object").at("attributes");
      auto yes = [&](const char* n) { return attrs.at(n).is_bool() && attrs.at(n).as_bool(); };
      const bool hardware = str(v, "origin") == "generated" && yes("local") && yes("never_extractable") && yes("always_sensitive");
      std::cout << "  v" << v.at("version") << " " << str(v, "state") << ": "
                << (hardware ? "generated in the token, never extractable"
                             : str(v, "origin") == "imported" ? "imported (was outside this token before)"
                                                              : "attributes do not prove in-token generation")
                << (yes("extractable") ? " — EXTRACTABLE" : "") << '\n';
    }
  }
  return kOk;
}

namespace {

std::optional<SecureBytes> read_key_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  SecureBytes k((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return k;
}

}  // namespace

int cmd_import_jobs(const Globals& g) {
  auto r = send(g, g.admin_socket, "GET", "/v1/admin/import-jobs");
  if (r.exit != kOk || g.json) return r.exit;
  std::cout << "methods this token offers:";
  for (const auto& m : r.body.at("methods").as_array()) std::cout << ' ' << m.as_string();
  std::cout << '\n';
  for (const auto& j : r.body.at("import_jobs").as_array())
    std::cout << str(j, "id") << "  " << str(j, "state") << "  " << str(j, "key_name") << " (" << str(j, "algorithm")
              << ")  " << str(j, "method") << "  expires " << str(j, "expires_at") << '\n';
  return kOk;
}

int cmd_import(const Globals& g, const ImportOptions& o) {
  Globals quiet = g;
  quiet.json = false;
  auto jr = send(quiet, g.admin_socket, "GET", "/v1/admin/import-jobs/" + o.job);
  if (jr.exit != kOk) return jr.exit;
  const auto& job = jr.body;
  const std::string method = str(job, "method");
  const bool rsa = method != "aes-kwp";
  const std::string hash = method.find("sha1") != std::string::npos ? "sha1" : "sha256";
  if (o.print_recipe) {
    if (rsa) {
      std::cout << "# import job " << o.job << " (" << method << "); K.bin holds the 32-byte key\n"
                << "custodyctl --json admin import-jobs | jq -r '.import_jobs[] | select(.id==\"" << o.job
                << "\") | .public_key' > job.pem\n"
                << "openssl rand -out E.bin 32\n"
                << "openssl pkeyutl -encrypt -pubin -inkey job.pem -in E.bin -out E.wrapped \\\n"
                << "  -pkeyopt rsa_padding_mode:oaep -pkeyopt rsa_oaep_md:" << hash << " -pkeyopt rsa_mgf1_md:" << hash << "\n"
                << "openssl enc -id-aes256-wrap-pad -iv A65959A6 -K \"$(xxd -p -c 64 E.bin)\" -in K.bin -out K.wrapped\n"
                << "cat E.wrapped K.wrapped > payload.bin\n";
    } else {
      std::cout << "# import job " << o.job << " (aes-kwp under transport key " << str(job, "transport_key")
                << "); on the legacy side K.wrapped = C_WrapKey(CKM_AES_KEY_WRAP_PAD, T, K), or with T's bytes:\n"
                << "openssl enc -id-aes256-wrap-pad -iv A65959A6 -K \"$(xxd -p -c 64 T.bin)\" -in K.bin -out payload.bin\n";
    }
    // The key check value proves the token unwrapped the key meant (none for a transport key).
    const std::string algorithm = str(job, "algorithm");
    std::string kcv_field;
    if (algorithm == "aes-256-gcm") {
      std::cout << "kcv=\"$(head -c 16 /dev/zero | openssl enc -aes-256-ecb -nopad -K \"$(xxd -p -c 64 K.bin)\" "
                   "| xxd -p | head -c 6)\"\n";
      kcv_field = ",\\\"kcv\\\":\\\"$kcv\\\"";
    } else if (algorithm == "hmac-sha256") {
      std::cout << "kcv=\"$(head -c 16 /dev/zero | openssl mac -digest SHA256 -macopt hexkey:\"$(xxd -p -c 64 K.bin)\" "
                   "HMAC | tr A-F a-f | head -c 6)\"\n";
      kcv_field = ",\\\"kcv\\\":\\\"$kcv\\\"";
    }
    std::cout << "curl --unix-socket \"$CUSTODY_ADMIN_SOCKET\" http://custody/v1/admin/import-jobs/" << o.job
              << "/import -d \"{\\\"wrapped_key\\\":\\\"$(base64 -w0 payload.bin)\\\"" << kcv_field << "}\"\n";
    return kOk;
  }
  if (!o.key_file) {
    std::cerr << "custodyctl: --key-file (the raw key) is required, or --print-recipe\n";
    return kUsage;
  }
  auto k = read_key_file(*o.key_file);
  if (!k || k->size() != 32) {
    std::cerr << "custodyctl: " << *o.key_file << " must hold exactly 32 bytes of key material\n";
    return kUsage;
  }
  Bytes payload;
  if (rsa) {
    // E comes from a checked generator inside: a failure here sends nothing (never K under zeros).
    auto built = byok::rsa_aes_kwp_payload(str(job, "public_key"), hash, *k);
    if (!built) {
      std::cerr << "custodyctl: cannot build the payload: " << built.error() << '\n';
      return kUnavailable;
    }
    payload = std::move(*built);
  } else {
    if (!o.transport_key_file) {
      std::cerr << "custodyctl: method aes-kwp needs --transport-key-file\n";
      return kUsage;
    }
    auto t = read_key_file(*o.transport_key_file);
    if (!t || t->size() != 32) {
      std::cerr << "custodyctl: " << *o.transport_key_file << " must hold exactly 32 bytes (the transport key)\n";
      return kUsage;
    }
    auto wrapped = byok::kwp_wrap(*t, *k);
    if (!wrapped) {
      std::cerr << "custodyctl: cannot wrap under the transport key: " << wrapped.error() << '\n';
      return kUnavailable;
    }
    payload = std::move(*wrapped);
  }
  json::object body{{"wrapped_key", base64_encode(payload)}};
  const std::string algorithm = str(job, "algorithm");
  if (o.send_kcv && algorithm != "aes-256-kwp-transport") {
    auto kcv = byok::key_check_value(algorithm, *k);
    if (!kcv) {
      std::cerr << "custodyctl: cannot compute the key check value: " << kcv.error() << '\n';
      return kUnavailable;
    }
    body["kcv"] = *kcv;
  }
  json::value v = body;
  auto r = send(g, g.admin_socket, "POST", "/v1/admin/import-jobs/" + o.job + "/import", &v);
  if (r.exit != kOk || g.json) return r.exit;
  std::cout << "imported into key " << str(r.body, "key") << " version " << r.body.at("version") << ", kcv "
            << (r.body.at("kcv").is_null() ? "-" : str(r.body, "kcv")) << '\n';
  return kOk;
}

int cmd_attest_key(const Globals& g) {
  Globals quiet = g;
  quiet.json = false;
  json::value body = json::object{{"nonce", ""}, {"keys", json::array()}};
  auto r = send(quiet, g.service_socket, "POST", "/v1/attestation", &body);
  if (r.exit != kOk) return r.exit;
  if (g.json) {
    std::cout << json::serialize(json::object{{"key_id", r.body.at("key_id")}, {"public_key", r.body.at("public_key")}}) << '\n';
    return kOk;
  }
  std::cout << "key_id " << str(r.body, "key_id") << '\n' << str(r.body, "public_key");
  return kOk;
}

}  // namespace custody::cli
