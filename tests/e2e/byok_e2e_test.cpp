// BYOK against a live daemon: the public-cloud openssl recipe run as shell commands for every
// method the token offers, OpenSSL decrypting with the original key bytes, HKDF with an imported
// HMAC key, legacy migration through a transport key, and every refusal leaving nothing behind.
#include <gtest/gtest.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>

#include <filesystem>
#include <thread>

#include "common/base64.h"
#include "common/hex.h"
#include "daemon/core/crypto/blob_codec.h"
#include "daemon/core/crypto/encryption_context.h"
#include "tests/support/daemon_process.h"
#include "tests/support/openssl_oracle.h"
#include "tests/support/wall_clock.h"

using namespace custody;
using namespace custody::test;
namespace json = boost::json;

namespace {


// Creates a job through dual control; returns it.
json::value make_job(Daemon& d, json::object params) {
  auto [status, request] = d.admin_operation("create-import-job", std::move(params));
  if (status != 201) throw std::runtime_error("create-import-job failed: " + json::serialize(request));
  return request.at("result").at("import_job");
}

std::string hash_of(const std::string& method) { return method.find("sha1") != std::string::npos ? "sha1" : "sha256"; }

// The recipe of CONTRACT §8, as shell commands, with the job's hash.
void recipe(const std::string& dir, const std::string& hash) {
  const std::string cmd = "cd " + dir + " && openssl rand -out E.bin 32 && "
                          "openssl pkeyutl -encrypt -pubin -inkey job.pem -in E.bin -out E.wrapped "
                          "-pkeyopt rsa_padding_mode:oaep -pkeyopt rsa_oaep_md:" + hash + " -pkeyopt rsa_mgf1_md:" + hash +
                          " && openssl enc -id-aes256-wrap-pad -iv A65959A6 -K \"$(xxd -p -c 64 E.bin)\" -in K.bin -out K.wrapped"
                          " && cat E.wrapped K.wrapped > payload.bin";
  if (run(cmd) != 0) throw std::runtime_error("the openssl recipe failed");
}

std::string openssl_aes_kcv(const std::string& dir) {
  run("cd " + dir + " && head -c 16 /dev/zero | openssl enc -aes-256-ecb -nopad -K \"$(xxd -p -c 64 K.bin)\" > kcv.bin");
  auto bytes = read_file(dir + "/kcv.bin");
  return hex_upper(std::span(reinterpret_cast<const std::uint8_t*>(bytes.data()), 3));
}

std::pair<int, json::value> import(Daemon& d, const std::string& job, const std::string& payload_file,
                                   std::optional<std::string> kcv = std::nullopt) {
  json::object body{{"wrapped_key", base64_encode(to_bytes(read_file(payload_file)))}};
  if (kcv) body["kcv"] = *kcv;
  auto r = d.admin().call("POST", "/v1/admin/import-jobs/" + job + "/import", json::serialize(body));
  return {r->status, json::parse(r->body)};
}

int secret_objects(const Daemon& d) {
  const std::string out = d.dir() + "/objects.txt";
  run("SOFTHSM2_CONF='" + d.token().conf + "' pkcs11-tool --module " + CUSTODY_SOFTHSM_MODULE + " --token-label " +
      d.token().label + " --login --pin " + d.token().pin + " --list-objects > " + out + " 2>/dev/null");
  int n = 0;
  std::istringstream in(read_file(out));
  for (std::string line; std::getline(in, line);) n += line.rfind("Secret Key Object", 0) == 0 || line.rfind("Private Key Object", 0) == 0;
  return n;
}

std::optional<Bytes> openssl_decrypt_blob(const std::string& key_bytes, const Bytes& blob, const core::EncryptionContext& ctx) {
  auto p = core::parse_blob(blob);
  if (!p) return std::nullopt;
  return openssl_gcm_decrypt(to_bytes(key_bytes), p->iv, core::blob_aad(p->header, core::encode_context(ctx)),
                             p->ciphertext_and_tag);
}

}  // namespace

TEST(ByokE2E, TheOpenSslRecipeWorksForEveryOfferedMethod) {
  Daemon d;
  auto listing = json::parse(d.admin().call("GET", "/v1/admin/import-jobs")->body);
  std::vector<std::string> rsa_methods;
  for (const auto& m : listing.at("methods").as_array())
    if (m.as_string() != "aes-kwp") rsa_methods.emplace_back(m.as_string());
  ASSERT_FALSE(rsa_methods.empty()) << json::serialize(listing);
  int n = 0;
  for (const auto& method : rsa_methods) {
    const std::string name = "byok-" + std::to_string(n++);
    auto job = make_job(d, {{"key_name", name}, {"algorithm", "aes-256-gcm"}, {"method", method},
                            {"policy", json::parse(allow_me_everything())}});
    EXPECT_EQ(field(job, "state"), "active");
    write_file(d.dir() + "/job.pem", field(job, "public_key"));
    ASSERT_EQ(run("openssl rand -out " + d.dir() + "/K.bin 32"), 0);
    recipe(d.dir(), hash_of(method));
    const std::string kcv = openssl_aes_kcv(d.dir());
    auto [s, imported] = import(d, field(job, "id"), d.dir() + "/payload.bin", kcv);
    ASSERT_EQ(s, 200) << method << ": " << json::serialize(imported);
    EXPECT_EQ(field(imported, "kcv"), kcv);
    // The imported key wraps a DEK that OpenSSL decrypts with the original key bytes.
    core::EncryptionContext ctx{{"tenant", "acme"}};
    auto [ws, wrapped] = d.post("/v1/keys/" + name + "/wrap", {{"plaintext", base64_encode(to_bytes("the DEK"))},
                                                             {"context", {{"tenant", "acme"}}}});
    ASSERT_EQ(ws, 200);
    auto blob = base64_decode(field(wrapped, "ciphertext"));
    auto plain = openssl_decrypt_blob(read_file(d.dir() + "/K.bin"), Bytes(blob->begin(), blob->end()), ctx);
    ASSERT_TRUE(plain) << method;
    EXPECT_EQ(std::string(plain->begin(), plain->end()), "the DEK");
    auto meta = json::parse(d.service().call("GET", "/v1/keys/" + name)->body);
    EXPECT_EQ(field(meta.at("versions").at(0), "origin"), "imported");
    EXPECT_EQ(field(json::parse(d.admin().call("GET", "/v1/admin/import-jobs/" + field(job, "id"))->body), "state"), "used");
  }
  // Attestation reports imported keys honestly.
  auto env = json::parse(d.service().call("POST", "/v1/attestation", R"({"nonce":""})")->body);
  auto report = base64_decode(field(env, "report"));
  auto doc = json::parse(std::string(report->begin(), report->end()));
  const auto& attrs = doc.at("keys").at(0).at("versions").at(0).at("object").at("attributes");
  EXPECT_FALSE(attrs.at("local").as_bool());
  EXPECT_FALSE(attrs.at("never_extractable").as_bool());
  EXPECT_FALSE(attrs.at("extractable").as_bool());
}

TEST(ByokE2E, AnImportedHmacKeyDerivesWhatOpenSslComputes) {
  Daemon d;
  auto job = make_job(d, {{"key_name", "mac"}, {"algorithm", "hmac-sha256"}, {"method", "rsa-oaep-3072-sha1-aes-256"},
                          {"policy", json::parse(allow_me_everything())}});
  write_file(d.dir() + "/job.pem", field(job, "public_key"));
  ASSERT_EQ(run("openssl rand -out " + d.dir() + "/K.bin 32"), 0);
  recipe(d.dir(), "sha1");
  ASSERT_EQ(import(d, field(job, "id"), d.dir() + "/payload.bin").first, 200);
  auto [s, derived] = d.post("/v1/keys/mac/derive", {{"info", base64_encode(to_bytes("tenant-7"))}, {"length", 42}});
  ASSERT_EQ(s, 200);
  ASSERT_EQ(run("cd " + d.dir() + " && openssl kdf -keylen 42 -kdfopt digest:SHA256 -kdfopt mode:EXPAND_ONLY "
                "-kdfopt hexkey:$(xxd -p -c 64 K.bin) -kdfopt info:tenant-7 -binary HKDF > okm.bin"),
            0);
  auto key = base64_decode(field(derived, "key"));
  EXPECT_EQ(std::string(key->begin(), key->end()), read_file(d.dir() + "/okm.bin"));
}

TEST(ByokE2E, BadImportsAreRefusedAndLeaveNothingBehind) {
  Daemon d;
  auto job = make_job(d, {{"key_name", "careful"}, {"algorithm", "aes-256-gcm"}, {"method", "rsa-oaep-3072-sha1-aes-256"}});
  auto other = make_job(d, {{"key_name", "other"}, {"algorithm", "aes-256-gcm"}, {"method", "rsa-oaep-3072-sha1-aes-256"}});
  const std::string id = field(job, "id");
  write_file(d.dir() + "/job.pem", field(other, "public_key"));
  ASSERT_EQ(run("openssl rand -out " + d.dir() + "/K.bin 32"), 0);
  recipe(d.dir(), "sha1");
  ASSERT_EQ(run("cp " + d.dir() + "/payload.bin " + d.dir() + "/for-other.bin"), 0);
  write_file(d.dir() + "/job.pem", field(job, "public_key"));
  recipe(d.dir(), "sha1");
  auto payload = read_file(d.dir() + "/payload.bin");
  write_file(d.dir() + "/truncated.bin", payload.substr(0, payload.size() - 8));
  const int objects = secret_objects(d);
  // The attestation report lists the active job with its wrapping key's attributes.
  auto env = json::parse(d.service().call("POST", "/v1/attestation", R"({"nonce":""})")->body);
  auto report = base64_decode(field(env, "report"));
  auto doc = json::parse(std::string(report->begin(), report->end()));
  ASSERT_EQ(doc.at("import_jobs").as_array().size(), 2u);
  const auto& attrs = doc.at("import_jobs").at(0).at("object").at("attributes");
  EXPECT_TRUE(attrs.at("unwrap").as_bool());
  EXPECT_FALSE(attrs.at("decrypt").as_bool());
  EXPECT_FALSE(attrs.at("sign").as_bool());
  EXPECT_FALSE(attrs.at("extractable").as_bool());
  EXPECT_TRUE(attrs.at("sensitive").as_bool());

  EXPECT_EQ(import(d, id, d.dir() + "/payload.bin", "000000").first, 400);  // wrong kcv
  EXPECT_EQ(import(d, id, d.dir() + "/truncated.bin").first, 400);
  EXPECT_EQ(import(d, id, d.dir() + "/for-other.bin").first, 400);  // wrapped for another job's key
  EXPECT_EQ(secret_objects(d), objects) << "a refused import left an object in the token";
  EXPECT_EQ(d.admin().call("GET", "/v1/keys/careful")->status, 404);
  // The job is still usable after the refusals, and single use after success.
  EXPECT_EQ(import(d, id, d.dir() + "/payload.bin", openssl_aes_kcv(d.dir())).first, 200);
  EXPECT_EQ(import(d, id, d.dir() + "/payload.bin").first, 409);
  EXPECT_EQ(import(d, "no-such-job", d.dir() + "/payload.bin").first, 404);

  auto quick = make_job(d, {{"key_name", "late"}, {"algorithm", "aes-256-gcm"}, {"method", "rsa-oaep-3072-sha1-aes-256"},
                            {"expires_in_seconds", 1}});
  write_file(d.dir() + "/job.pem", field(quick, "public_key"));
  recipe(d.dir(), "sha1");
  ASSERT_TRUE(wait_until_wall_clock(field(quick, "expires_at"))) << field(quick, "expires_at");
  EXPECT_EQ(import(d, field(quick, "id"), d.dir() + "/payload.bin").first, 409);
  int audited_refusals = 0;
  for (const auto& r : d.audit_records())
    audited_refusals += r.at("type") == "admin.import" && r.at("result") != "ok";
  EXPECT_EQ(audited_refusals, 6);
}

TEST(ByokE2E, ExpiredJobsLoseTheirKeyPairsAcrossRestarts) {
  Daemon d;
  const int before = secret_objects(d);
  auto job = make_job(d, {{"key_name", "gone"}, {"algorithm", "aes-256-gcm"}, {"method", "rsa-oaep-3072-sha1-aes-256"},
                          {"expires_in_seconds", 1}});
  EXPECT_EQ(secret_objects(d), before + 1);  // the job's private key
  ASSERT_EQ(d.terminate(), 0);
  ASSERT_TRUE(wait_until_wall_clock(field(job, "expires_at"))) << field(job, "expires_at");
  d.start();
  EXPECT_EQ(field(json::parse(d.admin().call("GET", "/v1/admin/import-jobs/" + field(job, "id"))->body), "state"), "expired");
  EXPECT_EQ(secret_objects(d), before);
}

TEST(ByokE2E, LegacyMigrationThroughATransportKey) {
  Daemon d;
  // 1. The transport key T comes in through an RSA job.
  auto tjob = make_job(d, {{"key_name", "legacy-transport"}, {"algorithm", "aes-256-kwp-transport"},
                           {"method", "rsa-oaep-3072-sha1-aes-256"}});
  write_file(d.dir() + "/job.pem", field(tjob, "public_key"));
  ASSERT_EQ(run("openssl rand -out " + d.dir() + "/T.bin 32 && cp " + d.dir() + "/T.bin " + d.dir() + "/K.bin"), 0);
  recipe(d.dir(), "sha1");
  auto [ts, t] = import(d, field(tjob, "id"), d.dir() + "/payload.bin");
  ASSERT_EQ(ts, 200) << json::serialize(t);
  EXPECT_TRUE(t.at("kcv").is_null());
  // 2. Keys the legacy HSM exported under T (CKM_AES_KEY_WRAP_PAD) import with aes-kwp jobs.
  for (int i = 0; i < 3; ++i) {
    const std::string name = "migrated-" + std::to_string(i);
    auto job = make_job(d, {{"key_name", name}, {"algorithm", "aes-256-gcm"}, {"method", "aes-kwp"},
                            {"transport_key", "legacy-transport"}, {"policy", json::parse(allow_me_everything())}});
    ASSERT_EQ(run("cd " + d.dir() + " && openssl rand -out K.bin 32 && openssl enc -id-aes256-wrap-pad -iv A65959A6 "
                  "-K \"$(xxd -p -c 64 T.bin)\" -in K.bin -out payload.bin"),
              0);
    ASSERT_EQ(import(d, field(job, "id"), d.dir() + "/payload.bin", openssl_aes_kcv(d.dir())).first, 200);
    auto [ws, wrapped] = d.post("/v1/keys/" + name + "/wrap", {{"plaintext", base64_encode(to_bytes("moved"))}});
    ASSERT_EQ(ws, 200);
    auto blob = base64_decode(field(wrapped, "ciphertext"));
    auto plain = openssl_decrypt_blob(read_file(d.dir() + "/K.bin"), Bytes(blob->begin(), blob->end()), {});
    ASSERT_TRUE(plain);
    EXPECT_EQ(std::string(plain->begin(), plain->end()), "moved");
  }
  // The transport key itself serves no data-plane operation.
  auto [tw, refused] = d.post("/v1/keys/legacy-transport/wrap", {{"plaintext", "aGk="}});
  EXPECT_TRUE(tw == 400 || tw == 403) << json::serialize(refused);
}

TEST(ByokE2E, CustodyctlImportBuildsTheSameBytes) {
  Daemon d;
  auto job = make_job(d, {{"key_name", "ctl"}, {"algorithm", "aes-256-gcm"}, {"method", "rsa-oaep-3072-sha1-aes-256"},
                          {"policy", json::parse(allow_me_everything())}});
  ASSERT_EQ(run("openssl rand -out " + d.dir() + "/K.bin 32"), 0);
  const std::string ctl = "CUSTODY_ADMIN_SOCKET=" + d.admin_socket() + " " + CUSTODYCTL_PATH;
  ASSERT_EQ(run(ctl + " import " + field(job, "id") + " --print-recipe > " + d.dir() + "/recipe.sh"), 0);
  EXPECT_NE(read_file(d.dir() + "/recipe.sh").find("rsa_oaep_md:sha1"), std::string::npos);
  ASSERT_EQ(run(ctl + " import " + field(job, "id") + " --key-file " + d.dir() + "/K.bin > " + d.dir() + "/out.txt"), 0)
      << read_file(d.dir() + "/out.txt");
  EXPECT_NE(read_file(d.dir() + "/out.txt").find(openssl_aes_kcv(d.dir())), std::string::npos);
}

// The printed recipe is the whole import: run as printed (bash, openssl, curl), it imports the
// key, and its key check value is the one the token computes, for AES and HMAC keys alike (the
// daemon refuses an import whose KCV differs).
TEST(ByokE2E, ThePrintedRecipeImportsTheKeyWithItsKeyCheckValue) {
  Daemon d;
  const std::string ctl_dir = std::filesystem::path(CUSTODYCTL_PATH).parent_path().string();
  for (const std::string algorithm : {"aes-256-gcm", "hmac-sha256"}) {
    SCOPED_TRACE(algorithm);
    const std::string name = algorithm == "aes-256-gcm" ? "recipe-aes" : "recipe-hmac";
    auto job = make_job(d, {{"key_name", name}, {"algorithm", algorithm}, {"method", "rsa-oaep-3072-sha1-aes-256"},
                            {"policy", json::parse(allow_me_everything())}});
    const std::string env = "CUSTODY_ADMIN_SOCKET=" + d.admin_socket() + " PATH=" + ctl_dir + ":$PATH ";
    ASSERT_EQ(run(env + CUSTODYCTL_PATH + " import " + field(job, "id") + " --print-recipe > " + d.dir() + "/recipe.sh"),
              0);
    const std::string recipe = read_file(d.dir() + "/recipe.sh");
    EXPECT_NE(recipe.find("\\\"kcv\\\""), std::string::npos) << recipe;
    ASSERT_EQ(run("cd " + d.dir() + " && openssl rand -out K.bin 32 && " + env + "bash -euo pipefail recipe.sh > answer.json"), 0)
        << recipe;
    auto answer = json::parse(read_file(d.dir() + "/answer.json"));
    ASSERT_TRUE(answer.as_object().contains("kcv")) << json::serialize(answer);
    if (algorithm == "aes-256-gcm") {
      EXPECT_EQ(field(answer, "kcv"), openssl_aes_kcv(d.dir()));
    }
    auto shown = d.admin().call("GET", "/v1/keys/" + name);
    ASSERT_TRUE(shown);
    EXPECT_EQ(shown->status, 200) << shown->body;
  }
}

// A crash between making a job's key pair and storing the job (or between using the job and
// destroying its pair) leaves a pair no job owns: the next start destroys it and says so.
TEST(ByokE2E, AKeyPairNoActiveJobOwnsIsDestroyedAtStart) {
  Daemon d;
  auto job = make_job(d, {{"key_name", "kept"}, {"algorithm", "aes-256-gcm"}, {"method", "rsa-oaep-3072-sha1-aes-256"}});
  const int with_job = secret_objects(d);
  ASSERT_EQ(d.terminate(), 0);
  ASSERT_EQ(run("SOFTHSM2_CONF='" + d.token().conf + "' pkcs11-tool --module " + CUSTODY_SOFTHSM_MODULE +
                " --token-label " + d.token().label + " --login --pin " + d.token().pin +
                " --keypairgen --key-type rsa:2048 --label custody-import:0123456789abcdef --id 0a0b0c >/dev/null 2>&1"),
            0);
  ASSERT_EQ(secret_objects(d), with_job + 1);
  d.start();
  EXPECT_EQ(secret_objects(d), with_job);  // the orphan is gone, the active job's pair is not
  EXPECT_EQ(field(json::parse(d.admin().call("GET", "/v1/admin/import-jobs/" + field(job, "id"))->body), "state"), "active");
  bool audited = false;
  for (const auto& rec : d.audit_records())
    audited = audited || (rec.at("type") == "daemon.recovery" &&
                          std::string(rec.at("action").as_string()).find("custody-import:0123456789abcdef") != std::string::npos);
  EXPECT_TRUE(audited);
}
