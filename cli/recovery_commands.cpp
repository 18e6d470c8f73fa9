#include "cli/recovery_commands.h"
#include "cli/local_input.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>

#include <boost/json.hpp>

#include "common/secure_buffer.h"
#include "custody/client.h"
#include "daemon/core/recovery/recovery_key.h"
#include "pkcs11/module.h"
#include "pkcs11/session.h"
#include "pkcs11/token.h"
#include "pkcs11/trusted_wrap.h"

namespace custody::cli {
namespace {

namespace json = boost::json;

struct OpenToken {
  std::unique_ptr<p11::Module> module;
  std::optional<p11::Session> session;
};

// Loads the module and opens a session on the selected token; the message says what failed.
Expected<OpenToken, std::string> open_token(const TokenOptions& o) {
  auto module = p11::Module::load(o.module, std::nullopt);
  if (!module) return unexpected(module.error());
  auto slot = p11::find_slot((*module)->api(), p11::TokenSelector{o.token_label, o.token_serial});
  if (!slot) return unexpected(slot.error());
  auto session = p11::Session::open((*module)->api(), *slot);
  if (!session) return unexpected(session.error().describe());
  OpenToken t;
  t.module = std::move(*module);
  t.session.emplace(std::move(*session));
  return t;
}

int failed(const std::string& what) {
  std::cerr << "custodyctl: " << what << '\n';
  return kUnavailable;
}

int report(const Globals& g, const client::Error& e) {
  if (!e.from_daemon()) {
    std::cerr << "custodyctl: " << e.message << " (is custodyd running? set --admin-socket or CUSTODY_ADMIN_SOCKET)\n";
    return kUnavailable;
  }
  if (g.json) std::cout << e.body << '\n';
  else std::cerr << "custodyctl: " << client::to_string(e.code) << ": " << e.message << " (request " << e.request_id << ")\n";
  return e.http_status >= 500 ? kUnavailable : kRefused;
}

// A POST or GET on the admin socket; the body parsed, or the exit status.
Expected<json::value, int> admin_call(const Globals& g, const char* method, const std::string& target,
                                      const std::string& body = {}) {
  client::Client admin({.socket_path = g.admin_socket});
  auto reply = admin.request(method, target, body, std::string_view(method) == "GET");
  if (!reply) return unexpected(report(g, reply.error()));
  boost::system::error_code ec;
  json::value v = json::parse(reply->body.view(), ec);
  if (ec) {
    std::cerr << "custodyctl: the daemon's answer is not JSON\n";
    return unexpected(static_cast<int>(kUnavailable));
  }
  return v;
}

// The request body of an import or a drill: the bundle file's envelope and the pinned key.
std::optional<json::object> bundle_params(const std::string& bundle_file, const std::string& key_file) {
  auto text = read_text(bundle_file);
  if (!text) {
    std::cerr << "custodyctl: cannot read " << bundle_file << '\n';
    return std::nullopt;
  }
  boost::system::error_code ec;
  auto envelope = json::parse(*text, ec);
  if (ec || !envelope.is_object()) {
    std::cerr << "custodyctl: " << bundle_file << " is not a recovery bundle (a JSON envelope)\n";
    return std::nullopt;
  }
  auto pem = read_text(key_file);
  if (!pem || !core::public_key_id(*pem)) {
    std::cerr << "custodyctl: " << key_file << " is not a PEM public key\n";
    return std::nullopt;
  }
  return json::object{{"bundle", std::move(envelope)}, {"attestation_public_key", *pem}};
}

}  // namespace

int cmd_recovery_init(const Globals& g, const RecoveryInitOptions& o) {
  if (o.bits < p11::kMinRecoveryKeyBits) {
    std::cerr << "custodyctl: --bits is at least " << p11::kMinRecoveryKeyBits << '\n';
    return kUsage;
  }
  auto pin = read_pin(o.token.pin_file, "Recovery token user PIN: ");
  if (!pin) {
    std::cerr << "custodyctl: no PIN (give --pin-file, or run on a terminal)\n";
    return kUsage;
  }
  auto token = open_token(o.token);
  if (!token) return failed(token.error());
  auto& s = *token->session;
  if (auto ok = s.login_user(std::string_view(pin->data(), pin->size())); !ok)
    return failed(ok.error().rv == CKR_PIN_INCORRECT ? "the PIN is wrong" : ok.error().describe());
  // A fresh random id first; the final one is the digest of the public key, set once it exists.
  Bytes provisional(32);
  if (auto r = s.generate_random(provisional); !r) return failed(r.error().describe());
  auto pair = p11::generate_recovery_pair(s, o.bits, provisional, "custody-recovery:new");
  if (!pair) return failed("cannot make the recovery key pair: " + pair.error().describe());
  auto abandon = [&](const std::string& why) {
    (void)s.destroy_object(pair->second);
    (void)s.destroy_object(pair->first);
    return failed(why);
  };
  auto rsa = p11::read_rsa_public_key(s, pair->first);
  if (!rsa) return abandon(rsa.error().describe());
  auto pem = core::rsa_public_key_pem(*rsa);
  if (!pem) return abandon(pem.error());
  auto key_id = core::public_key_id(*pem);
  if (!key_id) return abandon(key_id.error());
  auto id = core::recovery_object_id(*key_id);
  const std::string label = core::recovery_object_label(*key_id);
  for (CK_OBJECT_HANDLE h : {pair->first, pair->second}) {
    if (auto st = p11::set_object_id(s, h, *id); !st) return abandon(st.error().describe());
    p11::AttributeTemplate t;
    t.add_string(CKA_LABEL, label);
    if (auto st = p11::check(s.api()->C_SetAttributeValue(s.handle(), h, t.data(), t.size()), "C_SetAttributeValue"); !st)
      return abandon(st.error().describe());
  }
  if (o.out) {
    std::ofstream f(*o.out, std::ios::binary | std::ios::trunc);
    f << *pem;
    if (!f) return abandon("cannot write " + *o.out);
  } else {
    std::cout << *pem;
  }
  if (g.json) std::cout << json::serialize(json::object{{"key_id", *key_id}, {"label", label}}) << '\n';
  else std::cerr << "recovery key pair made in the token: key_id " << *key_id << " (label " << label << ")\n";
  return kOk;
}

int cmd_recovery_trust(const Globals& g, const RecoveryTrustOptions& o) {
  auto pem = read_text(o.public_key_file);
  if (!pem) {
    std::cerr << "custodyctl: cannot read " << o.public_key_file << '\n';
    return kUsage;
  }
  auto rsa = core::rsa_public_key_from_pem(*pem);
  if (!rsa) {
    std::cerr << "custodyctl: " << o.public_key_file << ": " << rsa.error() << '\n';
    return kUsage;
  }
  auto key_id = core::public_key_id(*pem);
  if (!key_id) {
    std::cerr << "custodyctl: " << key_id.error() << '\n';
    return kUsage;
  }
  auto so_pin = read_pin(o.token.pin_file, "Security Officer PIN: ");
  if (!so_pin) {
    std::cerr << "custodyctl: no SO PIN (give --so-pin-file, or run on a terminal)\n";
    return kUsage;
  }
  auto token = open_token(o.token);
  if (!token) return failed(token.error());
  auto& s = *token->session;
  if (auto ok = p11::login_so(s, std::string_view(so_pin->data(), so_pin->size())); !ok)
    return failed(ok.error().rv == CKR_PIN_INCORRECT ? "the SO PIN is wrong" : ok.error().describe());
  const auto id = core::recovery_object_id(*key_id);
  const std::string label = core::recovery_object_label(*key_id);
  int status = kOk;
  if (auto existing = p11::find_trusted_public_key(s, *id)) {
    std::cerr << "custodyctl: the token already trusts recovery key " << *key_id << '\n';
  } else if (existing.error().fault != p11::Fault::not_found) {
    status = failed(existing.error().describe());
  } else if (auto made = p11::import_trusted_public_key(s, *rsa, *id, label); !made) {
    status = failed("the token refuses the trusted key: " + made.error().describe());
  }
  // The SO session ends here: nothing else runs as SO.
  (void)s.api()->C_Logout(s.handle());
  if (status != kOk) return status;
  if (g.json) std::cout << json::serialize(json::object{{"key_id", *key_id}, {"label", label}}) << '\n';
  else std::cout << "trusted recovery key " << *key_id << " (label " << label << ")\n";
  return kOk;
}

int cmd_recovery_export(const Globals& g, const std::string& bundle_id, const std::string& out) {
  auto envelope = admin_call(g, "GET", "/v1/admin/recovery-bundles/" + bundle_id);
  if (!envelope) return envelope.error();
  std::ofstream f(out, std::ios::binary | std::ios::trunc);
  f << json::serialize(*envelope) << '\n';
  if (!f) {
    std::cerr << "custodyctl: cannot write " << out << '\n';
    return kUsage;
  }
  if (!g.json) std::cout << "recovery bundle " << bundle_id << " written to " << out << '\n';
  return kOk;
}

int cmd_recovery_import(const Globals& g, const std::string& bundle_file, const std::string& attestation_key_file) {
  auto params = bundle_params(bundle_file, attestation_key_file);
  if (!params) return kUsage;
  json::object body{{"operation", "import-recovery-bundle"}, {"params", std::move(*params)}};
  auto r = admin_call(g, "POST", "/v1/admin/requests", json::serialize(body));
  if (!r) return r.error();
  if (g.json) std::cout << json::serialize(*r) << '\n';
  else std::cout << "proposed request " << r->at("request").at("id").as_string() << " (import-recovery-bundle); "
                 << "operators approve it with custodyctl admin approve\n";
  return kOk;
}

int cmd_recovery_verify(const Globals& g, const std::string& bundle_file, const std::string& attestation_key_file) {
  auto params = bundle_params(bundle_file, attestation_key_file);
  if (!params) return kUsage;
  auto r = admin_call(g, "POST", "/v1/admin/recovery-drills", json::serialize(*params));
  if (!r) return r.error();
  const bool passed = r->at("passed").as_bool();
  if (g.json) {
    std::cout << json::serialize(*r) << '\n';
  } else {
    for (const auto& k : r->at("keys").as_array()) {
      std::cout << (k.at("passed").as_bool() ? "PASS " : "FAIL ") << k.at("name").as_string();
      for (const auto& v : k.at("versions").as_array()) {
        std::cout << "  v" << v.at("version").as_int64() << (v.at("passed").as_bool() ? " ok" : " FAILED");
        if (const auto* m = v.as_object().if_contains("message")) std::cout << " (" << m->as_string() << ")";
      }
      std::cout << '\n';
    }
    std::cout << (passed ? "recovery drill passed" : "recovery drill FAILED") << '\n';
  }
  return passed ? kOk : kVerifyFailed;
}

int cmd_admin_backup_state(const Globals& g, const std::string& out) {
  client::ClientOptions options{.socket_path = g.admin_socket};
  options.limits.max_body_bytes = std::size_t{4} << 30;
  client::Client admin(options);
  auto reply = admin.request("POST", "/v1/admin/state-backup");
  if (!reply) return report(g, reply.error());
  // A new private file: the copy says what the keys are and who may use them.
  const int fd = ::open(out.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) {
    std::cerr << "custodyctl: cannot create " << out << ": " << std::strerror(errno) << '\n';
    return kUsage;
  }
  const auto data = reply->body.view();
  std::size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    done += static_cast<std::size_t>(n);
  }
  const bool synced = ::fsync(fd) == 0;
  ::close(fd);
  if (done != data.size() || !synced) {
    std::cerr << "custodyctl: cannot write " << out << '\n';
    ::unlink(out.c_str());
    return kUsage;
  }
  if (!g.json) std::cout << "state database copied to " << out << " (" << data.size() << " bytes)\n";
  return kOk;
}

}  // namespace custody::cli
