// YAML → Config with validation. Every error names the key path and the line:col in the file.
#include <grp.h>
#include <yaml-cpp/yaml.h>

#include <cctype>
#include <fstream>
#include <initializer_list>
#include <limits>
#include <set>
#include <sstream>

#include "common/admin_operations.h"
#include "common/hex.h"
#include "config/config.h"
#include "common/duration.h"

namespace custody::config {
namespace {

class Reader {
 public:
  explicit Reader(std::vector<ConfigError>& errors) : errors_(errors) {}

  void error(const YAML::Node& node, const std::string& path, const std::string& message) {
    if (node.IsDefined() && node.Mark().line >= 0)
      errors_.push_back({path, node.Mark().line + 1, node.Mark().column + 1, message});
    else
      errors_.push_back({path, 0, 0, message});
  }

  // A mapping whose keys all belong to `allowed`; unknown keys are errors at their own position.
  bool mapping(const YAML::Node& node, const std::string& path, std::initializer_list<const char*> allowed) {
    if (!node.IsMap()) {
      error(node, path, "must be a mapping");
      return false;
    }
    std::set<std::string> known(allowed.begin(), allowed.end());
    for (const auto& kv : node) {
      auto key = kv.first.Scalar();
      if (!known.count(key)) error(kv.first, join(path, key), "unknown key");
    }
    return true;
  }

  std::optional<std::string> string(const YAML::Node& map, const std::string& path, const char* key,
                                    bool required) {
    auto node = map[key];
    if (!node.IsDefined() || node.IsNull()) {
      if (required) error(map, join(path, key), "is required");
      return std::nullopt;
    }
    if (!node.IsScalar() || node.Scalar().empty()) {
      error(node, join(path, key), "must be a non-empty string");
      return std::nullopt;
    }
    return node.Scalar();
  }

  template <class T>
  void number(const YAML::Node& map, const std::string& path, const char* key, T& out, T min, T max) {
    auto node = map[key];
    if (!node.IsDefined() || node.IsNull()) return;
    std::uint64_t v = 0;
    if (!node.IsScalar() || !YAML::convert<std::uint64_t>::decode(node, v) || v < min || v > max) {
      error(node, join(path, key),
            "must be a whole number from " + std::to_string(min) + " to " + std::to_string(max));
      return;
    }
    out = static_cast<T>(v);
  }

  void duration(const YAML::Node& map, const std::string& path, const char* key,
                std::chrono::milliseconds& out, std::chrono::milliseconds min, std::chrono::milliseconds max) {
    auto node = map[key];
    if (!node.IsDefined() || node.IsNull()) return;
    auto d = node.IsScalar() ? parse_duration(node.Scalar()) : std::nullopt;
    if (!d || *d < min || *d > max) {
      error(node, join(path, key),
            "must be a duration such as 500ms, 30s, 15m, 12h or 7d, from " + format_duration(min) + " to " +
                format_duration(max));
      return;
    }
    out = *d;
  }

  static std::string join(const std::string& path, const std::string& key) {
    return path.empty() ? key : path + "." + key;
  }

 private:
  std::vector<ConfigError>& errors_;
};

void read_token(Reader& r, const YAML::Node& node, Token& t) {
  const std::string path = "token";
  if (!r.mapping(node, path, {"module", "init_args", "label", "serial", "pin", "sessions", "workers"})) return;
  if (auto v = r.string(node, path, "module", true)) t.module = *v;
  t.init_args = r.string(node, path, "init_args", false);
  t.label = r.string(node, path, "label", false);
  t.serial = r.string(node, path, "serial", false);
  if (!t.label && !t.serial) r.error(node, path, "needs a label or a serial to choose the token");
  r.number<unsigned>(node, path, "sessions", t.sessions, 1, 1024);
  if (auto w = node["workers"]; w.IsDefined() && !w.IsNull() && !(w.IsScalar() && w.Scalar() == "auto")) {
    std::uint64_t workers = 0;
    if (!w.IsScalar() || !YAML::convert<std::uint64_t>::decode(w, workers) || workers > 256)
      r.error(w, "token.workers", "must be auto or a whole number from 0 to 256");
    else if (workers > t.sessions)
      r.error(w, "token.workers", "must not exceed token.sessions");
    else
      t.workers = static_cast<unsigned>(workers);
  }

  auto pin = node["pin"];
  if (!pin.IsDefined()) {
    r.error(node, "token.pin", "is required: one of file, env or credential");
    return;
  }
  if (pin.IsScalar()) {
    r.error(pin, "token.pin", "must not hold the PIN itself; use file, env or credential");
    return;
  }
  if (!r.mapping(pin, "token.pin", {"file", "env", "credential"})) return;
  int sources = 0;
  for (auto [key, kind] : {std::pair{"file", p11::PinSource::Kind::file},
                           std::pair{"env", p11::PinSource::Kind::env},
                           std::pair{"credential", p11::PinSource::Kind::credential}}) {
    if (auto v = r.string(pin, "token.pin", key, false)) {
      t.pin = {kind, *v};
      ++sources;
    }
  }
  if (sources != 1) r.error(pin, "token.pin", "needs exactly one of file, env or credential");
}

void read_socket(Reader& r, const YAML::Node& node, const std::string& path, Socket& s, bool admin) {
  if (!node.IsDefined()) return;
  if (!r.mapping(node, path, {"path", "mode", "group"})) return;
  if (auto v = r.string(node, path, "path", false)) s.path = *v;
  if (auto v = r.string(node, path, "mode", false)) {
    unsigned long mode = 0;
    std::size_t used = 0;
    try {
      mode = std::stoul(*v, &used, 8);
    } catch (...) {
      used = 0;
    }
    // Connecting to a Unix socket needs write permission: a world-writable socket lets every
    // local user in.
    if (used != v->size() || mode > 0777 || (mode & 0002) != 0)
      r.error(node["mode"], Reader::join(path, "mode"), "must be an octal mode such as \"0660\" (quoted), not world-writable");
    else
      s.mode = static_cast<mode_t>(mode);
  }
  s.group = r.string(node, path, "group", false);
  // The admin socket is for operators alone: writable by its owner and, at most, a group named
  // for the purpose, never by whatever group the daemon happens to run as.
  if (admin && (s.mode & 0020) != 0 && !s.group)
    r.error(node["mode"], Reader::join(path, "mode"),
            "lets the daemon's default group reach the admin socket; name the operators' group in " +
                Reader::join(path, "group") + " or use \"0600\"");
  if (s.group && !::getgrnam(s.group->c_str()))
    r.error(node["group"], Reader::join(path, "group"), "no such group: " + *s.group);
}

bool valid_key_name(const std::string& name) {
  if (name.empty() || name.size() > 63) return false;
  for (std::size_t i = 0; i < name.size(); ++i) {
    const char ch = name[i];
    const bool alnum = (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9');
    if (!alnum && (i == 0 || (ch != '.' && ch != '_' && ch != '-'))) return false;
  }
  return true;
}

// sockets.kms and kms (CONTRACT §10): the KMS v2 socket is served when both are given.
void read_kms(Reader& r, const YAML::Node& root, Config& c) {
  const bool has_socket = root["sockets"].IsMap() && root["sockets"]["kms"].IsDefined();
  auto section = root["kms"];
  if (!has_socket && !section.IsDefined()) return;
  if (!section.IsDefined()) {
    r.error(root["sockets"]["kms"], "sockets.kms", "needs a kms section naming the key it encrypts with (kms.key)");
    return;
  }
  if (!has_socket) {
    r.error(section, "kms", "needs sockets.kms, the socket kube-apiserver connects to");
    return;
  }
  Kms kms;
  kms.socket.path = "/run/custody/kms.sock";
  auto socket = root["sockets"]["kms"];
  read_socket(r, socket, "sockets.kms", kms.socket, false);
  if (kms.socket.path == c.service_socket.path || kms.socket.path == c.admin_socket.path)
    r.error(socket, "sockets.kms", "the kms socket must be a path of its own, not the service or admin socket's");
  if (!r.mapping(section, "kms", {"key", "healthz_interval"})) return;
  if (auto key = r.string(section, "kms", "key", true)) {
    if (valid_key_name(*key)) kms.key = *key;
    else r.error(section["key"], "kms.key", "must be a key name matching ^[a-z0-9][a-z0-9._-]{0,62}$");
  }
  r.duration(section, "kms", "healthz_interval", kms.healthz_interval, std::chrono::milliseconds(1'000),
             std::chrono::milliseconds(3'600'000));
  c.kms = std::move(kms);
}

bool xks_token_char(char ch) {
  return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' ||
         ch == '-';
}

// The state section: SQLite at a path (one host, the default) or PostgreSQL shared by a fleet.
void read_state(Reader& r, const YAML::Node& state, Config& c) {
  if (auto v = r.string(state, "state", "backend", false)) {
    if (*v != "sqlite" && *v != "postgresql") r.error(state["backend"], "state.backend", "must be sqlite or postgresql");
    else c.state_backend = *v;
  }
  const bool postgres = c.state_backend == "postgresql";
  if (auto v = r.string(state, "state", "path", !postgres)) {
    if (postgres) r.error(state["path"], "state.path", "is for backend sqlite; backend postgresql uses state.dsn");
    else c.state_path = *v;
  }
  auto dsn = r.string(state, "state", "dsn", postgres);
  auto file = r.string(state, "state", "password_file", false);
  auto credential = r.string(state, "state", "password_credential", false);
  if (!postgres) {
    for (const char* name : {"dsn", "password_file", "password_credential", "max_staleness"})
      if (state[name].IsDefined()) r.error(state[name], std::string("state.") + name, "is for backend postgresql");
    return;
  }
  if (dsn) {
    // A password in the conninfo (key=value or URI form) would sit in this file, logs and `ps`.
    std::string lower = *dsn;
    for (char& ch : lower) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    const auto scheme = lower.find("://");
    const auto at = lower.find('@');
    const bool uri_password = scheme != std::string::npos && at != std::string::npos &&
                              lower.substr(scheme + 3, at - scheme - 3).find(':') != std::string::npos;
    if (lower.find("password") != std::string::npos || uri_password)
      r.error(state["dsn"], "state.dsn", "must not hold a password: use state.password_file or state.password_credential");
    else c.state_dsn = *dsn;
  }
  if (file && credential)
    r.error(state, "state", "takes at most one of password_file or password_credential");
  c.state_password_file = file ? *file : credential ? *credential : "";
  c.state_password_credential = credential.has_value() && !file;
  r.duration(state, "state", "max_staleness", c.state_max_staleness, std::chrono::milliseconds(0),
             std::chrono::milliseconds(86'400'000));
}

// The xks section (docs/xks.md): the listener, TLS or plain HTTP, SigV4 credentials from files,
// the identity whose key policies give keyUsage, and the external key ids.
void read_xks(Reader& r, const YAML::Node& root, Config& c) {
  auto section = root["xks"];
  if (!section.IsDefined() || section.IsNull()) return;
  const std::string path = "xks";
  if (!r.mapping(section, path, {"address", "port", "tls", "plain_http", "region", "uri_prefix", "credentials",
                                 "acts_as_uid", "acts_as_gid", "keys", "health_key", "ping_path", "health_cache", "authorization"}))
    return;
  Xks x;
  if (auto v = r.string(section, path, "address", false)) x.address = *v;
  r.number<std::uint16_t>(section, path, "port", x.port, 0, 65535);
  bool plain = false;
  if (auto p = section["plain_http"]; p.IsDefined() && (!p.IsScalar() || !YAML::convert<bool>::decode(p, plain)))
    r.error(p, "xks.plain_http", "must be true or false");
  auto tls = section["tls"];
  if (tls.IsDefined() == plain)
    r.error(section, path, "needs exactly one of tls (certificate, private_key) or plain_http: true");
  if (tls.IsDefined() && r.mapping(tls, "xks.tls", {"certificate", "private_key", "client_ca", "client_subject"})) {
    XksTls t;
    if (auto v = r.string(tls, "xks.tls", "certificate", true)) t.certificate = *v;
    if (auto v = r.string(tls, "xks.tls", "private_key", true)) t.private_key = *v;
    t.client_ca = r.string(tls, "xks.tls", "client_ca", false);
    if (auto v = r.string(tls, "xks.tls", "client_subject", false)) {
      if (!t.client_ca) r.error(tls["client_subject"], "xks.tls.client_subject", "needs xks.tls.client_ca");
      t.client_subject = *v;
    }
    x.tls = std::move(t);
  }
  if (auto v = r.string(section, path, "region", true)) x.region = *v;
  if (auto v = r.string(section, path, "uri_prefix", false)) {
    bool ok = v->size() <= 64 && v->front() == '/' && v->back() != '/' && v->find("//") == std::string::npos;
    for (char ch : *v) ok = ok && (ch == '/' || xks_token_char(ch));
    if (!ok) r.error(section["uri_prefix"], "xks.uri_prefix", "must be like /example/prefix: up to 64 of A-Z a-z 0-9 . _ - and /, no trailing /");
    else x.uri_prefix = *v;
  }
  auto creds = section["credentials"];
  if (!creds.IsDefined() || !creds.IsSequence() || creds.size() == 0 || creds.size() > 4) {
    r.error(creds.IsDefined() ? creds : section, "xks.credentials", "needs 1 to 4 credentials (two for a rotation)");
  } else {
    for (std::size_t i = 0; i < creds.size(); ++i) {
      const std::string item = "xks.credentials[" + std::to_string(i) + "]";
      auto cred = creds[i];
      if (!r.mapping(cred, item, {"access_key_id", "secret_file", "secret_credential", "secret_access_key"})) continue;
      if (cred["secret_access_key"].IsDefined()) {
        r.error(cred["secret_access_key"], item + ".secret_access_key", "must not be in the configuration; use secret_file or secret_credential");
        continue;
      }
      XksCredential xc;
      if (auto v = r.string(cred, item, "access_key_id", true)) {
        bool ok = v->size() >= 20 && v->size() <= 30;
        for (char ch : *v) ok = ok && ((ch >= 'A' && ch <= 'Z') || (ch >= '2' && ch <= '7'));
        if (!ok) r.error(cred["access_key_id"], item + ".access_key_id", "must be 20 to 30 of A-Z and 2-7 (what KMS accepts)");
        for (const auto& other : x.credentials)
          if (other.access_key_id == *v) r.error(cred["access_key_id"], item + ".access_key_id", "is listed twice");
        xc.access_key_id = *v;
      }
      auto file = r.string(cred, item, "secret_file", false);
      auto credential = r.string(cred, item, "secret_credential", false);
      if (!file == !credential) r.error(cred, item, "needs exactly one of secret_file or secret_credential");
      xc.secret_file = file ? *file : credential ? *credential : "";
      xc.systemd_credential = credential.has_value();
      x.credentials.push_back(std::move(xc));
    }
  }
  r.number<uid_t>(section, path, "acts_as_uid", x.acts_as_uid, 0, 4'294'967'294U);
  r.number<gid_t>(section, path, "acts_as_gid", x.acts_as_gid, 0, 4'294'967'294U);
  if (!section["acts_as_uid"].IsDefined())
    r.error(section, "xks.acts_as_uid", "is required: the uid key policies name to let KMS encrypt (wrap) and decrypt (unwrap)");
  auto keys = section["keys"];
  if (keys.IsDefined() && !keys.IsMap()) r.error(keys, "xks.keys", "must map external key ids to custody key names");
  if (keys.IsMap()) {
    for (const auto& kv : keys) {
      const std::string id = kv.first.Scalar();
      bool ok = !id.empty() && id.size() <= 128;
      for (char ch : id) ok = ok && xks_token_char(ch);
      if (!ok) r.error(kv.first, "xks.keys." + id, "an external key id is 1 to 128 of A-Z a-z 0-9 . _ -");
      if (!kv.second.IsScalar() || !valid_key_name(kv.second.Scalar()))
        r.error(kv.second, "xks.keys." + id, "must be a custody key name");
      else if (ok) x.keys[id] = kv.second.Scalar();
    }
  }
  if (auto v = r.string(section, path, "health_key", true)) {
    if (valid_key_name(*v)) x.health_key = *v;
    else r.error(section["health_key"], "xks.health_key", "must be a custody key name");
  }
  if (auto v = r.string(section, path, "ping_path", false)) {
    if (v->front() != '/' || v->find("/kms/xks/") != std::string::npos)
      r.error(section["ping_path"], "xks.ping_path", "must be a path outside the XKS API");
    else x.ping_path = *v;
  }
  // The spec: a cached health answer must not be older than one minute.
  r.duration(section, path, "health_cache", x.health_cache, std::chrono::milliseconds(0), std::chrono::milliseconds(60'000));
  auto rules = section["authorization"];
  if (rules.IsDefined() && (!rules.IsSequence() || rules.size() > 64)) {
    r.error(rules, "xks.authorization", "must be a list of up to 64 rules");
  } else if (rules.IsDefined()) {
    for (std::size_t i = 0; i < rules.size(); ++i) {
      const std::string item = "xks.authorization[" + std::to_string(i) + "]";
      auto rule = rules[i];
      if (!r.mapping(rule, item, {"name", "keys", "principals", "kms_key_arns", "operations", "source_vpcs", "source_vpces"}))
        continue;
      XksAuthorizationRule out;
      if (auto v = r.string(rule, item, "name", true)) out.name = *v;
      for (auto [key, list] : {std::pair{"keys", &out.keys}, std::pair{"principals", &out.principals},
                               std::pair{"kms_key_arns", &out.kms_key_arns}, std::pair{"operations", &out.operations},
                               std::pair{"source_vpcs", &out.source_vpcs}, std::pair{"source_vpces", &out.source_vpces}}) {
        auto node = rule[key];
        if (!node.IsDefined()) continue;
        if (!node.IsSequence() || node.size() == 0 || node.size() > 64) {
          r.error(node, item + "." + key, "must be a list of 1 to 64 patterns (* and ? are wildcards)");
          continue;
        }
        for (const auto& p : node) {
          if (!p.IsScalar() || p.Scalar().empty() || p.Scalar().size() > 2048) r.error(p, item + "." + key, "must be a non-empty pattern");
          else list->push_back(p.Scalar());
        }
      }
      x.authorization.push_back(std::move(out));
    }
  }
  c.xks = std::move(x);
}

}  // namespace

Expected<Config, std::vector<ConfigError>> parse_config(const std::string& text, const std::string& path) {
  std::vector<ConfigError> errors;
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    errors.push_back({"", e.mark.line + 1, e.mark.column + 1, "not valid YAML: " + e.msg});
    return unexpected(errors);
  }
  Config c;
  c.source_path = path;
  auto digest = sha256_hex(to_bytes(text));
  if (!digest) {
    errors.push_back({"", 0, 0, "cannot hash the file for config_sha256: " + digest.error()});
    return unexpected(errors);
  }
  c.sha256 = std::move(*digest);
  c.service_socket.path = "/run/custody/service.sock";
  c.admin_socket.path = "/run/custody/admin.sock";
  c.admin_socket.mode = 0600;
  Reader r(errors);
  if (!r.mapping(root, "", {"token", "state", "audit", "sockets", "kms", "xks", "limits", "dual_control", "lifecycle"}))
    return unexpected(errors);

  if (root["token"].IsDefined()) read_token(r, root["token"], c.token);
  else r.error(root, "token", "is required");

  if (auto state = root["state"]; !state.IsDefined()) {
    r.error(root, "state", "is required");
  } else if (r.mapping(state, "state", {"backend", "path", "dsn", "password_file", "password_credential", "max_staleness"})) {
    read_state(r, state, c);
  }

  if (auto audit = root["audit"]; !audit.IsDefined()) {
    r.error(root, "audit", "is required");
  } else if (r.mapping(audit, "audit", {"path", "durability", "checkpoint_every", "checkpoint_interval", "max_file_bytes",
                                    "max_files", "max_total_bytes", "min_free_bytes"})) {
    r.duration(audit, "audit", "checkpoint_interval", c.audit.checkpoint_interval, std::chrono::milliseconds(100),
               std::chrono::milliseconds(86'400'000));
    r.number<std::uint64_t>(audit, "audit", "max_files", c.audit.max_files, 0, 1'000'000);
    r.number<std::uint64_t>(audit, "audit", "max_total_bytes", c.audit.max_total_bytes, 0, 1ULL << 50);
    r.number<std::uint64_t>(audit, "audit", "min_free_bytes", c.audit.min_free_bytes, 0, 1ULL << 50);
    if (c.audit.max_files == 1)
      r.error(audit["max_files"], "audit.max_files", "must be 0 (keep every file) or at least 2: the file being written is one");
    r.number<std::uint64_t>(audit, "audit", "max_file_bytes", c.audit.max_file_bytes, 0, 1ULL << 40);
    r.number<std::uint64_t>(audit, "audit", "checkpoint_every", c.audit.checkpoint_every, 2, 1'000'000);
    if (auto v = r.string(audit, "audit", "path", true)) c.audit.path = *v;
    if (auto v = r.string(audit, "audit", "durability", false)) {
      if (*v == "always") c.audit.durability = Durability::always;
      else if (*v == "group") c.audit.durability = Durability::group;
      else if (*v == "none") c.audit.durability = Durability::none;
      else r.error(audit["durability"], "audit.durability", "must be always, group or none");
    }
  }

  if (auto sockets = root["sockets"]; sockets.IsDefined() && r.mapping(sockets, "sockets", {"service", "admin", "kms"})) {
    read_socket(r, sockets["service"], "sockets.service", c.service_socket, false);
    read_socket(r, sockets["admin"], "sockets.admin", c.admin_socket, true);
    if (c.service_socket.path == c.admin_socket.path)
      r.error(sockets, "sockets", "the service and admin sockets must be different paths");
  }
  read_kms(r, root, c);
  read_xks(r, root, c);

  if (auto limits = root["limits"]; limits.IsDefined() &&
      r.mapping(limits, "limits", {"max_body_bytes", "max_header_bytes", "max_json_depth", "max_connections",
                                   "max_connections_per_uid", "admin_connections", "max_in_flight",
                                   "uid_requests_per_second", "uid_burst", "first_byte_timeout", "idle_timeout",
                                   "request_timeout"})) {
    auto& l = c.limits;
    r.number<std::size_t>(limits, "limits", "max_body_bytes", l.max_body_bytes, 1024, 16 * 1024 * 1024);
    r.number<std::size_t>(limits, "limits", "max_header_bytes", l.max_header_bytes, 1024, 1024 * 1024);
    r.number<unsigned>(limits, "limits", "max_json_depth", l.max_json_depth, 4, 256);
    r.number<unsigned>(limits, "limits", "max_connections", l.max_connections, 1, 65536);
    r.number<unsigned>(limits, "limits", "max_connections_per_uid", l.max_connections_per_uid, 1, 65536);
    r.number<unsigned>(limits, "limits", "admin_connections", l.admin_connections, 1, 4096);
    r.number<unsigned>(limits, "limits", "max_in_flight", l.max_in_flight, 1, 1'000'000);
    r.number<unsigned>(limits, "limits", "uid_burst", l.uid_burst, 0, 100'000'000);
    if (auto rate = limits["uid_requests_per_second"]; rate.IsDefined() && !rate.IsNull()) {
      double v = -1;
      if (!rate.IsScalar() || !YAML::convert<double>::decode(rate, v) || !(v >= 0) || v > 1e9)
        r.error(rate, "limits.uid_requests_per_second", "must be a number from 0 (off) to 1000000000");
      else
        l.uid_requests_per_second = v;
    }
    if (l.max_connections_per_uid > l.max_connections) l.max_connections_per_uid = l.max_connections;
    using std::chrono::milliseconds;
    r.duration(limits, "limits", "first_byte_timeout", l.first_byte_timeout, milliseconds(100), milliseconds(3'600'000));
    r.duration(limits, "limits", "idle_timeout", l.idle_timeout, milliseconds(100), milliseconds(86'400'000));
    r.duration(limits, "limits", "request_timeout", l.request_timeout, milliseconds(100), milliseconds(3'600'000));
  }

  if (auto dc = root["dual_control"]; dc.IsDefined() &&
      r.mapping(dc, "dual_control", {"operators", "quorum", "request_ttl"})) {
    auto& d = c.dual_control;
    auto ops = dc["operators"];
    if (ops.IsDefined() && !ops.IsSequence()) {
      r.error(ops, "dual_control.operators", "must be a list of {name, public_key}");
    } else if (ops.IsDefined()) {
      for (std::size_t i = 0; i < ops.size(); ++i) {
        const std::string path = "dual_control.operators[" + std::to_string(i) + "]";
        if (!r.mapping(ops[i], path, {"name", "public_key"})) continue;
        OperatorConfig o;
        if (auto v = r.string(ops[i], path, "name", true)) o.name = *v;
        if (auto v = r.string(ops[i], path, "public_key", true)) o.public_key_path = *v;
        for (const auto& other : d.operators)
          if (other.name == o.name) r.error(ops[i]["name"], path + ".name", "operator '" + o.name + "' is listed twice");
        d.operators.push_back(std::move(o));
      }
    }
    if (auto q = dc["quorum"]; q.IsDefined() && q.IsMap()) {
      for (const auto& kv : q) {
        const std::string op = kv.first.Scalar();
        const std::string path = "dual_control.quorum." + op;
        std::uint32_t n = 0;
        if (!is_admin_operation(op)) {
          r.error(kv.first, path, "unknown operation");
        } else if (!kv.second.IsScalar() || !YAML::convert<std::uint32_t>::decode(kv.second, n) || n < 1 || n > 16) {
          r.error(kv.second, path, "must be a whole number from 1 to 16");
        } else if (n < 2 && needs_two_approvals_at_least(op)) {
          r.error(kv.second, path, op + " is destructive or security-relevant and needs at least 2 approvals");
        } else {
          d.quorum[op] = n;
        }
      }
    } else if (q.IsDefined()) {
      r.error(q, "dual_control.quorum", "must map operation names to approval counts");
    }
    r.duration(dc, "dual_control", "request_ttl", d.request_ttl, std::chrono::milliseconds(60'000),
               std::chrono::milliseconds(7LL * 86'400'000));
    for (std::string_view name : kAdminOperations) {
      const std::string op(name);
      auto it = d.quorum.find(op);
      const std::uint32_t need = it == d.quorum.end() ? 2 : it->second;
      if (need > d.operators.size())
        r.error(dc, "dual_control", op + " needs " + std::to_string(need) + " approvals but only " +
                                        std::to_string(d.operators.size()) + " operator(s) are configured");
    }
  } else if (!dc.IsDefined()) {
    r.error(root, "dual_control", "is required: list the operators who approve admin requests (at least 2)");
  }

  if (auto lc = root["lifecycle"]; lc.IsDefined() &&
      r.mapping(lc, "lifecycle", {"min_destruction_wait", "check_interval", "default_usage_limit"})) {
    using std::chrono::milliseconds;
    r.duration(lc, "lifecycle", "min_destruction_wait", c.lifecycle.min_destruction_wait, milliseconds(0),
               milliseconds(3650LL * 86'400'000));
    r.duration(lc, "lifecycle", "check_interval", c.lifecycle.check_interval, milliseconds(100),
               milliseconds(86'400'000));
    r.number<std::uint64_t>(lc, "lifecycle", "default_usage_limit", c.lifecycle.default_usage_limit, 1,
                            std::uint64_t{1} << 31);
  }

  if (!errors.empty()) return unexpected(errors);
  return c;
}

Expected<Config, std::vector<ConfigError>> load_config(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return unexpected(std::vector<ConfigError>{{"", 0, 0, "cannot read the configuration file"}});
  std::stringstream ss;
  ss << in.rdbuf();
  return parse_config(ss.str(), path);
}

}  // namespace custody::config
