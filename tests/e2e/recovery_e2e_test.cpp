// Backup and disaster recovery without plaintext (issue #13, CONTRACT §11) with two SoftHSMv2
// tokens and two real daemons: the recovery ceremony with custodyctl (init on the DR token,
// trust by the primary token's SO), a dual-controlled export, the import on the DR daemon after
// which it unwraps the primary's blobs, the refusals (flipped byte, other signer, a key without
// recovery, one approval, a destroyed key, a key that exists with other material), the drill
// that leaves no token object behind, and the state backup.
#include <gtest/gtest.h>

#include <chrono>
#include <exception>
#include <iostream>
#include <thread>

#include "common/base64.h"
#include "tests/support/daemon_process.h"

using namespace custody;
using namespace custody::test;
namespace json = boost::json;

namespace {

const char* kFastLifecycle = "lifecycle:\n  min_destruction_wait: 0s\n  check_interval: 100ms\n";

std::string env_for(const Daemon& d) {
  return "SOFTHSM2_CONF='" + d.token().conf + "' CUSTODY_SERVICE_SOCKET='" + d.service_socket() +
         "' CUSTODY_ADMIN_SOCKET='" + d.admin_socket() + "' ";
}

int ctl(const Daemon& d, const std::string& args) { return run(env_for(d) + CUSTODYCTL_PATH + " " + args); }

std::string token_args(const Daemon& d) {
  return "--module " + std::string(CUSTODY_SOFTHSM_MODULE) + " --token-label '" + d.token().label + "'";
}

// Token objects the user can see, counted by pkcs11-tool (not by custody's own code).
int count_token_objects(const Daemon& d) {
  const std::string out = d.dir() + "/objects.txt";
  const int rc = run("SOFTHSM2_CONF='" + d.token().conf + "' pkcs11-tool --module " + CUSTODY_SOFTHSM_MODULE +
                     " --token-label '" + d.token().label + "' --login --pin '" + d.token().pin +
                     "' --list-objects > " + out + " 2>/dev/null");
  if (rc != 0) return -1;
  const std::string text = read_file(out);
  int n = 0;
  for (std::size_t at = 0; (at = text.find("Object;", at)) != std::string::npos; ++at) ++n;
  return n;
}

json::value post_json(client::UnixHttpClient& socket, const std::string& target, const json::value& body, int& status) {
  auto r = socket.call("POST", target, json::serialize(body));
  if (!r) throw std::runtime_error("no answer from " + target + ": " + r.error());
  status = r->status;
  return json::parse(r->body);
}

std::pair<int, json::value> propose_only(Daemon& d, const std::string& operation, json::object params) {
  int status = 0;
  auto body = post_json(d.admin(), "/v1/admin/requests", json::value{{"operation", operation}, {"params", std::move(params)}},
                        status);
  return {status, body};
}

class RecoveryE2E : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    DaemonOptions o;
    o.extra_yaml = kFastLifecycle;
    primary_ = new Daemon(o);
    dr_ = new Daemon(o);
    // The ceremony runs with the daemons stopped: SoftHSMv2 does not show a running process the
    // objects another process adds (docs/recovery.md: restart custodyd after the ceremony).
    ASSERT_EQ(primary_->terminate(), 0);
    ASSERT_EQ(dr_->terminate(), 0);
    // The ceremony. DR side: the recovery key pair, made with the DR token's user PIN.
    ASSERT_EQ(ctl(*dr_, "--json recovery init " + token_args(*dr_) + " --pin-file '" + dr_->token().pin_file +
                            "' --out " + path(*dr_, "recovery.pem") + " > " + path(*dr_, "init.json")),
              0);
    recovery_key_id_ = std::string(json::parse(read_file(path(*dr_, "init.json"))).at("key_id").as_string());
    // Primary side: the SO imports the public key as a trusted wrapping key.
    write_file(path(*primary_, "so.pin"), "so-pin-5678\n");
    ASSERT_EQ(ctl(*primary_, "recovery trust " + path(*dr_, "recovery.pem") + " " + token_args(*primary_) +
                                  " --so-pin-file " + path(*primary_, "so.pin") + " > /dev/null"),
              0);
    primary_->start();
    dr_->start();
    int status = 0;
    struct LogOnFailure {
      ~LogOnFailure() {
        if (::testing::Test::HasFailure() || std::uncaught_exceptions()) std::cerr << primary_->log();
      }
    } log_on_failure;
    auto envelope = post_json(primary_->service(), "/v1/attestation", json::value{{"nonce", ""}}, status);
    ASSERT_EQ(status, 200);
    primary_attestation_key_ = std::string(envelope.at("public_key").as_string());
    write_file(path(*primary_, "attestation.pem"), primary_attestation_key_);
    envelope = post_json(dr_->service(), "/v1/attestation", json::value{{"nonce", ""}}, status);
    ASSERT_EQ(status, 200);
    dr_attestation_key_ = std::string(envelope.at("public_key").as_string());
  }
  static void TearDownTestSuite() {
    delete primary_;
    delete dr_;
    primary_ = dr_ = nullptr;
  }
  static std::string path(const Daemon& d, const std::string& name) { return d.dir() + "/" + name; }

  static int create(Daemon& d, const std::string& name, const std::string& algorithm, bool recovery) {
    return d
        .admin_operation("create-key", {{"name", name}, {"algorithm", algorithm},
                                        {"policy", json::parse(allow_me_everything())}, {"recovery", recovery}})
        .first;
  }
  static std::string wrap(Daemon& d, const std::string& key, const std::string& plain) {
    auto [status, body] = d.post("/v1/keys/" + key + "/wrap",
                                 {{"plaintext", base64_encode(to_bytes(plain))}, {"context", {{"app", "dr"}}}});
    if (status != 200) throw std::runtime_error("wrap failed: " + json::serialize(body));
    return std::string(body.at("ciphertext").as_string());
  }
  // Exports the named keys (every recovery key when empty) with two approvals; the envelope.
  static json::object export_bundle(const std::vector<std::string>& keys = {}) {
    json::object params{{"recovery_key_id", recovery_key_id_}};
    if (!keys.empty()) {
      json::array names;
      for (const auto& k : keys) names.emplace_back(k);
      params["keys"] = std::move(names);
    }
    auto [status, request] = primary_->admin_operation("export-recovery-bundle", params);
    if (status != 201) throw std::runtime_error("export failed: " + json::serialize(request));
    const std::string id(request.at("result").at("recovery_bundle").at("id").as_string());
    auto r = primary_->admin().call("GET", "/v1/admin/recovery-bundles/" + id);
    if (!r || r->status != 200) throw std::runtime_error("GET recovery bundle failed");
    return json::parse(r->body).as_object();
  }
  static json::object import_params(const json::object& envelope, const std::string& pinned) {
    return {{"bundle", envelope}, {"attestation_public_key", pinned}};
  }

  static Daemon* primary_;
  static Daemon* dr_;
  static std::string recovery_key_id_;
  static std::string primary_attestation_key_;
  static std::string dr_attestation_key_;
};
Daemon* RecoveryE2E::primary_ = nullptr;
Daemon* RecoveryE2E::dr_ = nullptr;
std::string RecoveryE2E::recovery_key_id_;
std::string RecoveryE2E::primary_attestation_key_;
std::string RecoveryE2E::dr_attestation_key_;

}  // namespace

TEST_F(RecoveryE2E, TheDrDaemonUnwrapsEveryBlobThePrimaryMadeAfterTheImport) {
  ASSERT_EQ(create(*primary_, "orders", "aes-256-gcm", true), 201);
  ASSERT_EQ(create(*primary_, "tokens", "hmac-sha256", true), 201);
  const std::string v1 = wrap(*primary_, "orders", "first secret");
  ASSERT_EQ(primary_->admin_operation("rotate-key", {{"name", "orders"}}).first, 201);
  const std::string v2 = wrap(*primary_, "orders", "second secret");
  ASSERT_EQ(primary_->admin_operation("set-policy", {{"name", "tokens"}, {"policy", json::parse(allow_me_everything())}}).first, 201);
  auto [ds, derived] = primary_->post("/v1/keys/tokens/derive", {{"info", base64_encode(to_bytes(std::string("tenant-7")))}, {"length", 48}});
  ASSERT_EQ(ds, 200);

  // The metadata and the attestation say which keys can be backed up, and where to.
  auto shown = primary_->admin().call("GET", "/v1/keys/orders");
  ASSERT_TRUE(shown && shown->status == 200);
  EXPECT_TRUE(json::parse(shown->body).at("recovery").as_bool());
  int status = 0;
  auto att = post_json(primary_->service(), "/v1/attestation", json::value{{"nonce", ""}, {"keys", {"orders"}}}, status);
  ASSERT_EQ(status, 200);
  const auto report_bytes = base64_decode(att.at("report").as_string());
  ASSERT_TRUE(report_bytes);
  auto report = json::parse(std::string(report_bytes->begin(), report_bytes->end()));
  const auto& key = report.at("keys").at(0);
  EXPECT_TRUE(key.at("recovery").as_bool());
  EXPECT_TRUE(key.at("versions").at(0).at("object").at("attributes").at("wrap_with_trusted").as_bool());
  EXPECT_TRUE(key.at("versions").at(0).at("object").at("attributes").at("extractable").as_bool());
  const auto& trusted = report.at("trusted_wrapping_keys").as_array();
  ASSERT_EQ(trusted.size(), 1u);
  EXPECT_EQ(trusted.at(0).at("key_id").as_string(), recovery_key_id_);
  EXPECT_TRUE(trusted.at(0).at("attributes").at("trusted").as_bool());
  EXPECT_TRUE(trusted.at(0).at("attributes").at("wrap").as_bool());
  EXPECT_FALSE(trusted.at(0).at("attributes").at("encrypt").as_bool());

  auto envelope = export_bundle({"orders", "tokens"});
  // The bundle verifies with plain OpenSSL like an attestation report.
  const auto b = base64_decode(envelope.at("bundle").as_string());
  const auto sig = base64_decode(envelope.at("signature").as_string());
  ASSERT_TRUE(b && sig);
  write_file(path(*primary_, "bundle.bin"), std::string(b->begin(), b->end()));
  write_file(path(*primary_, "bundle.sig"), std::string(sig->begin(), sig->end()));
  EXPECT_EQ(run("openssl dgst -sha256 -verify " + path(*primary_, "attestation.pem") + " -signature " +
                path(*primary_, "bundle.sig") + " " + path(*primary_, "bundle.bin") + " >/dev/null"),
            0);
  const auto bundle = json::parse(std::string(b->begin(), b->end()));
  EXPECT_EQ(bundle.at("format").as_string(), "custody.recovery-bundle.v1");
  EXPECT_EQ(bundle.at("recovery_key").at("key_id").as_string(), recovery_key_id_);
  EXPECT_EQ(bundle.at("approved_by").as_array().size(), 2u);
  EXPECT_EQ(bundle.at("keys").at(0).at("versions").as_array().size(), 2u);

  auto [is, imported] = dr_->admin_operation("import-recovery-bundle", import_params(envelope, primary_attestation_key_));
  ASSERT_EQ(is, 201) << json::serialize(imported);
  for (const auto& k : imported.at("result").at("keys").as_array()) EXPECT_EQ(k.at("result").as_string(), "restored");

  auto unwrapped = [&](const std::string& ct) {
    auto [us, body] = dr_->post("/v1/keys/orders/unwrap", {{"ciphertext", ct}, {"context", {{"app", "dr"}}}});
    EXPECT_EQ(us, 200) << json::serialize(body);
    if (us != 200) return std::string();
    auto plain = base64_decode(body.at("plaintext").as_string());
    return std::string(plain->begin(), plain->end());
  };
  EXPECT_EQ(unwrapped(v1), "first secret");
  EXPECT_EQ(unwrapped(v2), "second secret");
  auto [dr_ds, dr_derived] = dr_->post("/v1/keys/tokens/derive", {{"info", base64_encode(to_bytes(std::string("tenant-7")))}, {"length", 48}});
  ASSERT_EQ(dr_ds, 200);
  EXPECT_EQ(dr_derived.at("key"), derived.at("key"));
  auto restored = dr_->admin().call("GET", "/v1/keys/orders");
  ASSERT_TRUE(restored && restored->status == 200);
  auto meta = json::parse(restored->body);
  EXPECT_EQ(meta.at("current_version").as_int64(), 2);
  EXPECT_TRUE(meta.at("recovery").as_bool());
  EXPECT_EQ(meta.at("versions").at(0).at("origin").as_string(), "recovered");
  // New blobs on the DR side use the current version, like on the primary.
  EXPECT_EQ(unwrapped(wrap(*dr_, "orders", "after failover")), "after failover");

  // Importing the same bundle again changes nothing: the keys are there with the same material.
  auto [again, second] = dr_->admin_operation("import-recovery-bundle", import_params(envelope, primary_attestation_key_));
  ASSERT_EQ(again, 201) << json::serialize(second);
  for (const auto& k : second.at("result").at("keys").as_array()) EXPECT_EQ(k.at("result").as_string(), "already-present");
}

TEST_F(RecoveryE2E, ABundleWithAFlippedByteOrAnotherSignerIsRefused) {
  ASSERT_EQ(create(*primary_, "ledger", "aes-256-gcm", true), 201);
  const auto envelope = export_bundle({"ledger"});
  // One byte of B flipped (inside a base64 character's worth of the wrapped key).
  auto b = base64_decode(envelope.at("bundle").as_string());
  ASSERT_TRUE(b);
  std::string bytes(b->begin(), b->end());
  const auto at = bytes.find("\"wrapped\":\"") + 20;
  bytes[at] = bytes[at] == 'A' ? 'B' : 'A';
  json::object flipped = envelope;
  flipped["bundle"] = base64_encode(to_bytes(bytes));
  auto [fs, fbody] = propose_only(*dr_, "import-recovery-bundle", import_params(flipped, primary_attestation_key_));
  EXPECT_EQ(fs, 400) << json::serialize(fbody);
  EXPECT_NE(json::serialize(fbody).find("signature"), std::string::npos) << json::serialize(fbody);
  // Pinned to another daemon's key: the primary's signature does not count.
  auto [os, obody] = propose_only(*dr_, "import-recovery-bundle", import_params(envelope, dr_attestation_key_));
  EXPECT_EQ(os, 400) << json::serialize(obody);
  // Re-signed by another key that claims to be the signer, while the operators pin the primary's.
  run("openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out " + path(*dr_, "mallory.key") +
      " 2>/dev/null && openssl pkey -in " + path(*dr_, "mallory.key") + " -pubout -out " + path(*dr_, "mallory.pem"));
  write_file(path(*dr_, "b.bin"), std::string(b->begin(), b->end()));
  ASSERT_EQ(run("openssl dgst -sha256 -sign " + path(*dr_, "mallory.key") + " -out " + path(*dr_, "b.sig") + " " +
                path(*dr_, "b.bin")),
            0);
  const std::string sig = read_file(path(*dr_, "b.sig"));
  json::object resigned = envelope;
  resigned["signature"] = base64_encode(to_bytes(sig));
  resigned["public_key"] = read_file(path(*dr_, "mallory.pem"));
  auto [rs, rbody] = propose_only(*dr_, "import-recovery-bundle", import_params(resigned, primary_attestation_key_));
  EXPECT_EQ(rs, 400) << json::serialize(rbody);
  // The drill refuses them the same way.
  int status = 0;
  post_json(dr_->admin(), "/v1/admin/recovery-drills", import_params(flipped, primary_attestation_key_), status);
  EXPECT_EQ(status, 400);
  EXPECT_FALSE(dr_->admin().call("GET", "/v1/keys/ledger")->status == 200);
}

TEST_F(RecoveryE2E, AKeyWithoutRecoveryIsNeverExported) {
  ASSERT_EQ(create(*primary_, "local-only", "aes-256-gcm", false), 201);
  auto shown = primary_->admin().call("GET", "/v1/keys/local-only");
  ASSERT_TRUE(shown && shown->status == 200);
  EXPECT_FALSE(json::parse(shown->body).at("recovery").as_bool());
  auto [status, body] = propose_only(*primary_, "export-recovery-bundle",
                                     {{"recovery_key_id", recovery_key_id_}, {"keys", {"local-only"}}});
  EXPECT_EQ(status, 409) << json::serialize(body);
  // A recovery key_id the token does not trust: the export fails, with nothing stored.
  ASSERT_EQ(create(*primary_, "solo", "aes-256-gcm", true), 201);
  auto [us, unknown] = primary_->admin_operation(
      "export-recovery-bundle", {{"recovery_key_id", std::string(64, 'a')}, {"keys", {"solo"}}});
  EXPECT_EQ(us, 409) << json::serialize(unknown);
}

TEST_F(RecoveryE2E, TheExportNeedsTwoApprovals) {
  ASSERT_EQ(create(*primary_, "vault-a", "aes-256-gcm", true), 201);
  auto [status, proposed] = propose_only(*primary_, "export-recovery-bundle",
                                         {{"recovery_key_id", recovery_key_id_}, {"keys", {"vault-a"}}});
  ASSERT_EQ(status, 201) << json::serialize(proposed);
  EXPECT_EQ(proposed.at("request").at("required").as_int64(), 2);
  const std::string id(proposed.at("request").at("id").as_string());
  auto [as, approved] = primary_->approve(id, "alice");
  ASSERT_EQ(as, 200);
  EXPECT_EQ(approved.at("request").at("state").as_string(), "pending");
  // No configuration may lower it to one approval: custodyd refuses to start with it.
  DaemonOptions o;
  o.extra_dual_control = "  quorum: {export-recovery-bundle: 1}\n";
  EXPECT_THROW(Daemon d(o), std::runtime_error);
  o.extra_dual_control = "  quorum: {import-recovery-bundle: 1}\n";
  EXPECT_THROW(Daemon d(o), std::runtime_error);
}

TEST_F(RecoveryE2E, TheImportRefusesADestroyedKeyAndAKeyThatExistsWithOtherMaterial) {
  ASSERT_EQ(create(*primary_, "shredded", "aes-256-gcm", true), 201);
  ASSERT_EQ(primary_->admin_operation("schedule-destruction", {{"name", "shredded"}, {"wait_seconds", 0}}).first, 201);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  for (;;) {
    auto r = primary_->admin().call("GET", "/v1/keys/shredded");
    if (r && json::parse(r->body).at("state").as_string() == "destroyed") break;
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "the key was not destroyed in time";
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  auto envelope = export_bundle({"shredded"});
  auto b = base64_decode(envelope.at("bundle").as_string());
  EXPECT_EQ(std::string(b->begin(), b->end()).find("\"wrapped\""), std::string::npos) << "a destroyed key carries no material";
  auto [is, imported] = dr_->admin_operation("import-recovery-bundle", import_params(envelope, primary_attestation_key_));
  ASSERT_EQ(is, 201) << json::serialize(imported);
  EXPECT_EQ(imported.at("result").at("keys").at(0).at("result").as_string(), "refused");
  EXPECT_EQ(dr_->admin().call("GET", "/v1/keys/shredded")->status, 404);

  // The same name on both sides, other material: nothing is restored.
  ASSERT_EQ(create(*primary_, "twin", "aes-256-gcm", true), 201);
  ASSERT_EQ(create(*dr_, "twin", "aes-256-gcm", true), 201);
  auto clash = export_bundle({"twin"});
  auto [cs, cbody] = propose_only(*dr_, "import-recovery-bundle", import_params(clash, primary_attestation_key_));
  EXPECT_EQ(cs, 201);  // proposable; the material is compared when it runs
  const std::string id(cbody.at("request").at("id").as_string());
  dr_->approve(id, "alice");
  auto [fs, failed] = dr_->approve(id, "bob");
  ASSERT_EQ(fs, 200);
  EXPECT_EQ(failed.at("request").at("state").as_string(), "failed") << json::serialize(failed);
  EXPECT_NE(json::serialize(failed).find("different material"), std::string::npos) << json::serialize(failed);
}

TEST_F(RecoveryE2E, TheDrillChecksEveryVersionAndLeavesNoTokenObjectBehind) {
  ASSERT_EQ(create(*primary_, "drill-a", "aes-256-gcm", true), 201);
  ASSERT_EQ(create(*primary_, "drill-h", "hmac-sha256", true), 201);
  ASSERT_EQ(primary_->admin_operation("rotate-key", {{"name", "drill-a"}}).first, 201);
  auto envelope = export_bundle({"drill-a", "drill-h"});
  // custodyctl recovery export writes the bundle the operators carry to the DR site.
  const std::string bundle_id = [&] {
    auto b = base64_decode(envelope.at("bundle").as_string());
    return std::string(json::parse(std::string(b->begin(), b->end())).at("id").as_string());
  }();
  ASSERT_EQ(ctl(*primary_, "recovery export " + bundle_id + " --out " + path(*primary_, "drill.bundle") + " >/dev/null"), 0);

  const int before = count_token_objects(*dr_);
  ASSERT_GT(before, 0);
  ASSERT_EQ(ctl(*dr_, "--json recovery verify " + path(*primary_, "drill.bundle") + " --attestation-key " +
                          path(*primary_, "attestation.pem") + " > " + path(*dr_, "drill.json")),
            0);
  EXPECT_EQ(count_token_objects(*dr_), before) << "the drill left token objects behind";
  auto report = json::parse(read_file(path(*dr_, "drill.json")));
  EXPECT_TRUE(report.at("passed").as_bool());
  ASSERT_EQ(report.at("keys").as_array().size(), 2u);
  EXPECT_EQ(report.at("keys").at(0).at("versions").as_array().size(), 2u);
  EXPECT_EQ(dr_->admin().call("GET", "/v1/keys/drill-a")->status, 404) << "the drill restored a key";
  // Audited, and the metric an alert watches moved.
  bool audited = false;
  for (const auto& r : dr_->audit_records())
    if (r.at("type").as_string() == "admin.recovery-drill" && r.at("result").as_string() == "ok") audited = true;
  EXPECT_TRUE(audited);
  auto metrics = dr_->admin().call("GET", "/metrics");
  ASSERT_TRUE(metrics && metrics->status == 200);
  const auto at = metrics->body.find("\ncustody_recovery_drill_last_success_timestamp ");
  ASSERT_NE(at, std::string::npos);
  EXPECT_NE(metrics->body.substr(at, 50).find("timestamp 1"), std::string::npos) << metrics->body.substr(at, 60);

  // A drill that fails says so with exit status 4: the primary's bundle checked on the primary,
  // which holds no recovery private key, is refused outright instead.
  EXPECT_EQ(ctl(*primary_, "recovery verify " + path(*primary_, "drill.bundle") + " --attestation-key " +
                               path(*primary_, "attestation.pem") + " 2>/dev/null"),
            1);
}

TEST_F(RecoveryE2E, BackupStateCopiesTheDatabaseWhileServing) {
  ASSERT_EQ(create(*primary_, "backed-up", "aes-256-gcm", true), 201);
  const std::string copy = path(*primary_, "state-copy.db");
  ASSERT_EQ(ctl(*primary_, "admin backup-state " + copy + " > /dev/null"), 0);
  EXPECT_EQ(run("test \"$(stat -c %a " + copy + ")\" = 600"), 0);
  EXPECT_EQ(run("sqlite3 " + copy + " 'PRAGMA integrity_check' | grep -qx ok"), 0);
  EXPECT_EQ(run("sqlite3 " + copy + " \"SELECT recovery FROM keys WHERE name='backed-up'\" | grep -qx 1"), 0);
  // An existing file is never overwritten.
  EXPECT_NE(ctl(*primary_, "admin backup-state " + copy + " 2>/dev/null"), 0);
}
