#include "tests/crash/restart_checks.h"

#include <algorithm>
#include <iostream>
#include <sstream>

#include "common/base64.h"
#include "daemon/core/crypto/blob_codec.h"
#include "daemon/core/crypto/encryption_context.h"
#include "tests/support/openssl_oracle.h"

namespace custody::crash {
namespace json = boost::json;

namespace {

std::optional<json::value> parse(const std::string& body) {
  boost::system::error_code ec;
  auto v = json::parse(body, ec);
  if (ec) return std::nullopt;
  return v;
}

// GET on a socket: the parsed 200 body, or nullopt with the problem added.
std::optional<json::value> get(client::UnixHttpClient& c, const std::string& target, Problems& problems) {
  auto r = c.call("GET", target);
  if (!r) {
    problems.push_back("GET " + target + ": " + r.error());
    return std::nullopt;
  }
  auto v = parse(r->body);
  if (r->status != 200 || !v) {
    problems.push_back("GET " + target + " answered " + std::to_string(r->status) + ": " + r->body);
    return std::nullopt;
  }
  return v;
}

std::string string_or_empty(const json::value& v, const char* name) {
  const auto* f = v.is_object() ? v.as_object().if_contains(name) : nullptr;
  return f && f->is_string() ? std::string(f->as_string()) : std::string();
}

}  // namespace

Problems check_ciphertexts(test::Daemon& d, const std::vector<AckedCiphertext>& acked) {
  Problems problems;
  constexpr std::size_t kBatch = 128;  // well under the 64 KiB body limit
  std::map<std::string, std::vector<const AckedCiphertext*>> by_key;
  for (const auto& c : acked) by_key[c.key].push_back(&c);
  for (const auto& [key, items] : by_key) {
    for (std::size_t start = 0; start < items.size(); start += kBatch) {
      const std::size_t end = std::min(items.size(), start + kBatch);
      json::array batch;
      for (std::size_t i = start; i < end; ++i) batch.push_back({{"ciphertext", items[i]->ciphertext}, {"context", items[i]->context}});
      auto [status, body] = d.post("/v1/keys/" + key + "/unwrap", {{"batch", std::move(batch)}});
      if (status != 200) {
        problems.push_back("batch unwrap of " + key + " answered " + std::to_string(status) + ": " + json::serialize(body));
        continue;
      }
      for (std::size_t i = start; i < end; ++i) {
        const auto& result = body.at("batch").at(i - start);
        if (string_or_empty(result, "plaintext") != items[i]->plaintext)
          problems.push_back("acknowledged " + items[i]->request_id + " (" + key + " v" + std::to_string(items[i]->key_version) +
                             ") does not unwrap to its plaintext after the restart: " + json::serialize(result));
      }
    }
  }
  return problems;
}

Problems check_audit_records(const AuditIndex& audit, const std::vector<AckedRecord>& acked) {
  Problems problems;
  for (const auto& r : acked) {
    const std::size_t found = audit.ok_records(r.request_id, r.type);
    if (found < r.count)
      problems.push_back("acknowledged " + r.request_id + " has " + std::to_string(found) + " '" + r.type +
                         "' audit records with result ok, expected " + std::to_string(r.count));
  }
  return problems;
}

Problems check_admin_requests(test::Daemon& d, const AuditIndex& audit, const std::map<std::string, AckedAdminRequest>& acked) {
  Problems problems;
  std::map<std::string, std::int64_t> rotated_to;  // key → highest version an acknowledged rotation made
  for (const auto& [id, a] : acked) {
    auto shown = get(d.admin(), "/v1/admin/requests/" + id, problems);
    if (!shown) {
      problems.push_back("acknowledged admin request " + id + " (" + a.operation + ") is gone after the restart");
      continue;
    }
    const auto& request = shown->at("request");
    std::set<std::string> approvals;
    for (const auto& x : request.at("approvals").as_array()) approvals.insert(string_or_empty(x, "operator"));
    for (const auto& op : a.approved_by)
      if (!approvals.count(op)) problems.push_back("acknowledged approval of " + id + " by " + op + " is gone after the restart");
    if (a.executed && string_or_empty(request, "state") != "executed")
      problems.push_back("admin request " + id + " was acknowledged as executed, is '" + string_or_empty(request, "state") + "' after the restart");
    if (a.executed && a.operation == "rotate-key") {
      const auto& key = a.result.at("key");
      auto& v = rotated_to[string_or_empty(key, "name")];
      v = std::max(v, key.at("current_version").to_number<std::int64_t>());
    }
  }
  for (const auto& [name, version] : rotated_to) {
    auto meta = get(d.service(), "/v1/keys/" + name, problems);
    if (!meta) continue;
    if (meta->at("current_version").to_number<std::int64_t>() < version)
      problems.push_back("key " + name + " is at version " + json::serialize(meta->at("current_version")) +
                         " after the restart; an acknowledged rotation made version " + std::to_string(version));
  }
  // CONTRACT §9: every approval and execution the state holds is recorded, acknowledged or not.
  auto listed = get(d.admin(), "/v1/admin/requests", problems);
  if (!listed) return problems;
  for (const auto& item : listed->at("requests").as_array()) {
    const auto& request = item.at("request");
    const std::string id = string_or_empty(request, "id");
    for (const auto& x : request.at("approvals").as_array())
      if (!audit.names_admin_request(id, "admin.approve", string_or_empty(x, "operator")))
        problems.push_back("the state holds " + string_or_empty(x, "operator") + "'s approval of " + id + " (" + string_or_empty(request, "operation") +
                           "), the audit log has no admin.approve record of it");
    if (string_or_empty(request, "state") == "executed" && !audit.names_admin_request(id, "admin.execute"))
      problems.push_back("the state holds " + id + " (" + string_or_empty(request, "operation") +
                         ") as executed, the audit log has no admin.execute record of it");
  }
  return problems;
}

Problems check_imports(test::Daemon& d, const std::set<std::string>& jobs, const std::vector<AckedImport>& imports) {
  Problems problems;
  for (const auto& id : jobs)
    if (!get(d.admin(), "/v1/admin/import-jobs/" + id, problems))
      problems.push_back("acknowledged import job " + id + " is gone after the restart");
  for (const auto& i : imports) {
    auto meta = get(d.service(), "/v1/keys/" + i.key, problems);
    if (!meta) {
      problems.push_back("acknowledged import " + i.request_id + " into " + i.key + " is gone after the restart");
      continue;
    }
    bool found = false;
    for (const auto& v : meta->at("versions").as_array())
      if (v.at("version").to_number<std::int64_t>() == i.version) {
        found = true;
        if (string_or_empty(v, "origin") != "imported" || string_or_empty(v, "kcv") != i.kcv)
          problems.push_back("imported " + i.key + " v" + std::to_string(i.version) + " is " + json::serialize(v) +
                             " after the restart, expected origin imported and kcv " + i.kcv);
      }
    if (!found) {
      problems.push_back("acknowledged import " + i.request_id + ": " + i.key + " has no version " + std::to_string(i.version));
      continue;
    }
    // The version the key wraps under holds the bytes we imported: OpenSSL decrypts with them.
    if (meta->at("current_version").to_number<std::int64_t>() != i.version) continue;
    const std::string plaintext = "imported before the crash";
    auto [status, wrapped] = d.post("/v1/keys/" + i.key + "/wrap", {{"plaintext", base64_encode(to_bytes(plaintext))},
                                                                     {"context", {{"import", i.request_id}}}});
    if (status != 200) {
      problems.push_back("wrap with imported " + i.key + " answered " + std::to_string(status));
      continue;
    }
    auto blob_text = base64_decode(string_or_empty(wrapped, "ciphertext"));
    const Bytes blob(blob_text->begin(), blob_text->end());
    auto parsed = core::parse_blob(blob);
    auto plain = parsed ? test::openssl_gcm_decrypt(to_bytes(i.key_bytes), parsed->iv,
                                                    core::blob_aad(parsed->header, core::encode_context({{"import", i.request_id}})),
                                                    parsed->ciphertext_and_tag)
                        : std::nullopt;
    if (!plain || std::string(plain->begin(), plain->end()) != plaintext)
      problems.push_back("imported " + i.key + " does not hold the key bytes sent by " + i.request_id);
  }
  return problems;
}

Problems check_reconciled(test::Daemon& d) {
  Problems problems;
  if (auto health = get(d.service(), "/v1/health", problems); health && string_or_empty(*health, "status") != "ok")
    problems.push_back("health after the restart: " + json::serialize(*health));
  auto r = d.admin().call("POST", "/v1/admin/keys/check", "{}");
  if (!r || r->status != 200) {
    problems.push_back("POST /v1/admin/keys/check failed: " + (r ? r->body : r.error()));
    return problems;
  }
  auto report = parse(r->body);
  if (!report) {
    problems.push_back("POST /v1/admin/keys/check answered no JSON: " + r->body);
    return problems;
  }
  // SoftHSMv2 runs inside custodyd and writes each object file in place: a kill -9 in the middle
  // of a write leaves a file the token lists but cannot describe, which custody reports as an
  // unreadable stray and never uses. A network HSM is not killed with the daemon; any other stray
  // is a failure.
  std::size_t strays = 0, torn = 0;
  for (const auto& stray : report->at("strays").as_array())
    (std::string_view(stray.as_string()).starts_with("unreadable token object") ? torn : strays) += 1;
  if (torn > 0)
    std::cout << "[ crash    ] " << torn << " SoftHSMv2 object file(s) torn by the kill, reported as unreadable strays"
              << std::endl;
  if (!report->at("missing").as_array().empty() || !report->at("altered").as_array().empty() || strays > 0)
    problems.push_back("state and token do not reconcile after the restart: " + r->body);
  return problems;
}

Problems check_import_job_objects(test::Daemon& d) {
  Problems problems;
  auto listed = get(d.admin(), "/v1/admin/import-jobs", problems);
  if (!listed) return problems;
  std::set<std::string> active;
  for (const auto& j : listed->at("import_jobs").as_array())
    if (string_or_empty(j, "state") == "active") active.insert(string_or_empty(j, "id"));
  const std::string out = d.dir() + "/objects.txt";
  if (test::run("SOFTHSM2_CONF='" + d.token().conf + "' pkcs11-tool --module " CUSTODY_SOFTHSM_MODULE " --token-label " +
                d.token().label + " --login --pin " + d.token().pin + " --list-objects > " + out + " 2>/dev/null") != 0)
    return {"pkcs11-tool cannot list the token's objects"};
  const std::string prefix = "custody-import:";
  std::istringstream in(test::read_file(out));
  std::set<std::string> reported;
  for (std::string line; std::getline(in, line);) {
    const auto at = line.find("label:");
    if (at == std::string::npos) continue;
    const auto start = line.find_first_not_of(' ', at + 6);
    if (start == std::string::npos) continue;  // an object without a label
    std::string label = line.substr(start);
    if (label.rfind(prefix, 0) != 0 || active.count(label.substr(prefix.size())) || !reported.insert(label).second) continue;
    problems.push_back("token object " + label + " belongs to no active import job after the restart");
  }
  return problems;
}

Problems check_audit_chain(const std::string& audit_path, const std::string& attestation_pem, const std::string& work_dir) {
  std::string command = std::string(CUSTODYCTL_PATH) + " audit verify";
  for (const auto& f : audit_files(audit_path)) command += " " + f;
  const std::string out = work_dir + "/verify.out";
  command += " --public-key " + attestation_pem + " > " + out + " 2>&1";
  if (test::run(command) == 0) return {};
  return {"custodyctl audit verify failed: " + test::read_file(out)};
}

}  // namespace custody::crash
