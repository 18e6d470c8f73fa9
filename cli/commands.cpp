#include "cli/commands.h"

#include <boost/json.hpp>
#include <fstream>
#include <iostream>
#include <iterator>
#include <sstream>

#include "cli/unix_http_client.h"
#include "common/base64.h"
#include "common/hex.h"
#include "daemon/core/audit_verify.h"

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

std::optional<json::object> parse_context(const std::vector<std::string>& pairs) {
  json::object ctx;
  for (const auto& p : pairs) {
    auto eq = p.find('=');
    if (eq == std::string::npos || eq == 0) {
      std::cerr << "custodyctl: --context takes key=value, got '" << p << "'\n";
      return std::nullopt;
    }
    ctx[p.substr(0, eq)] = p.substr(eq + 1);
  }
  return ctx;
}

struct Outcome {
  int exit = kOk;
  json::value body;
};

// Sends the request; prints the daemon's error (or the raw body with --json) and maps the status.
Outcome send(const Globals& g, const std::string& socket, const std::string& method, const std::string& target,
             const json::value* body = nullptr) {
  client::UnixHttpClient http(socket);
  auto reply = http.call(method, target, body ? json::serialize(*body) : "");
  if (!reply) {
    std::cerr << "custodyctl: " << reply.error() << " (is custodyd running? set --socket or CUSTODY_SERVICE_SOCKET)\n";
    return {kUnavailable, {}};
  }
  boost::system::error_code ec;
  json::value v = json::parse(reply->body, ec);
  if (reply->status >= 200 && reply->status < 300) {
    if (g.json) std::cout << reply->body << '\n';
    return {kOk, std::move(v)};
  }
  if (g.json) {
    std::cout << reply->body << '\n';
  } else if (!ec && v.is_object() && v.as_object().contains("error")) {
    const auto& e = v.at("error");
    std::cerr << "custodyctl: " << json::value_to<std::string>(e.at("code")) << ": "
              << json::value_to<std::string>(e.at("message")) << " (request " << reply->request_id << ")\n";
  } else {
    std::cerr << "custodyctl: HTTP " << reply->status << ": " << reply->body << '\n';
  }
  return {reply->status >= 500 ? kUnavailable : kRefused, std::move(v)};
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
  auto data = read_input(o.input);
  auto ctx = parse_context(o.context);
  if (!data || !ctx) return kUsage;
  json::value body = {{"plaintext", base64_encode(to_bytes(*data))}, {"context", *ctx}};
  auto r = send(g, g.service_socket, "POST", key_path(o.key, "wrap"), &body);
  if (r.exit != kOk || g.json) return r.exit;
  return write_output(o.out, str(r.body, "ciphertext"), true);
}

int cmd_unwrap(const Globals& g, const DataOptions& o, bool base64_output) {
  auto data = read_input(o.input);
  auto ctx = parse_context(o.context);
  if (!data || !ctx) return kUsage;
  json::value body = {{"ciphertext", trim(*data)}, {"context", *ctx}};
  auto r = send(g, g.service_socket, "POST", key_path(o.key, "unwrap"), &body);
  if (r.exit != kOk || g.json) return r.exit;
  if (base64_output) return write_output(o.out, str(r.body, "plaintext"), true);
  auto plain = base64_decode(str(r.body, "plaintext"));
  if (!plain) return kUnavailable;
  return write_output(o.out, std::string(plain->begin(), plain->end()), false);
}

int cmd_rewrap(const Globals& g, const DataOptions& o) {
  auto data = read_input(o.input);
  auto ctx = parse_context(o.context);
  if (!data || !ctx) return kUsage;
  json::value body = {{"ciphertext", trim(*data)}, {"context", *ctx}};
  auto r = send(g, g.service_socket, "POST", key_path(o.key, "rewrap"), &body);
  if (r.exit != kOk || g.json) return r.exit;
  return write_output(o.out, str(r.body, "ciphertext"), true);
}

int cmd_datakey(const Globals& g, const std::string& key, unsigned length, const std::vector<std::string>& context,
                bool include_plaintext) {
  auto ctx = parse_context(context);
  if (!ctx) return kUsage;
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
  std::string info_b64;
  if (info.text || info.file != "-") {
    auto data = read_input(info);
    if (!data) return kUsage;
    info_b64 = info_is_base64 ? trim(*data) : base64_encode(to_bytes(*data));
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

// Sends an admin request and prints what it did to the key.
int admin_request(const Globals& g, const std::string& operation, json::object params) {
  json::value body = {{"operation", operation}, {"params", std::move(params)}};
  auto r = send(g, g.admin_socket, "POST", "/v1/admin/requests", &body);
  if (r.exit != kOk || g.json) return r.exit;
  const auto& req = r.body.at("request");
  const auto& key = req.at("result").at("key");
  std::cout << operation << ": " << str(req, "state") << "; key " << str(key, "name") << " is " << str(key, "state")
            << ", current version " << key.at("current_version") << ", minimum decrypt version "
            << key.at("min_decrypt_version");
  if (key.as_object().contains("destroy_at")) std::cout << ", destroyed at " << str(key, "destroy_at");
  std::cout << '\n';
  return kOk;
}

}  // namespace

int cmd_keys_create(const Globals& g, const CreateOptions& o) {
  boost::system::error_code ec;
  auto policy = json::parse(o.policy_json, ec);
  if (ec) {
    std::cerr << "custodyctl: --policy is not valid JSON: " << ec.message() << '\n';
    return kUsage;
  }
  json::object params{{"name", o.key}, {"algorithm", o.algorithm}, {"policy", policy}};
  if (o.rotation_period) params["rotation_period"] = *o.rotation_period;
  if (o.usage_limit) params["usage_limit"] = *o.usage_limit;
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

int cmd_health(const Globals& g) {
  client::UnixHttpClient http(g.service_socket);
  auto reply = http.call("GET", "/v1/health");
  if (!reply) {
    std::cerr << "custodyctl: " << reply.error() << '\n';
    return kUnavailable;
  }
  if (g.json) {
    std::cout << reply->body << '\n';
  } else {
    boost::system::error_code ec;
    auto v = json::parse(reply->body, ec);
    if (ec) return kUnavailable;
    std::cout << "status: " << str(v, "status") << "\ntoken:  " << str(v.at("token"), "label")
              << (v.at("token").at("available").as_bool() ? " (available)" : " (UNAVAILABLE)") << "\naudit:  "
              << str(v.at("audit"), "path") << (v.at("audit").at("writable").as_bool() ? " (writable" : " (NOT WRITABLE")
              << ", seq " << v.at("audit").at("sequence") << ")\nkeys:   " << v.at("keys") << '\n';
  }
  return reply->status == 200 ? kOk : kUnavailable;
}

int cmd_audit_verify(const std::string& file, bool as_json) {
  std::ifstream in(file, std::ios::binary);
  if (!in) {
    std::cerr << "custodyctl: cannot read " << file << '\n';
    return kUsage;
  }
  auto r = core::verify_audit_log(in);
  if (as_json) {
    json::object o{{"ok", r.ok}, {"records", r.records}, {"head", r.head}};
    if (!r.ok) o["first_bad_line"] = r.first_bad_line, o["problem"] = r.problem;
    std::cout << json::serialize(o) << '\n';
  } else if (r.ok) {
    std::cout << file << ": OK, " << r.records << " records, chain head " << r.head << '\n';
  } else {
    std::cout << file << ": BROKEN at line " << r.first_bad_line << ": " << r.problem << " (" << r.records
              << " records verified before it)\n";
  }
  return r.ok ? kOk : kVerifyFailed;
}

}  // namespace custody::cli
