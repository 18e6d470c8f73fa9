// Attestation and signed audit checkpoints against a real daemon, checked with plain OpenSSL,
// with OpenSC's pkcs11-tool as the independent reader of the token, and with a mutation battery.
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include <algorithm>
#include <filesystem>
#include <set>
#include <sstream>

#include "common/base64.h"
#include "common/hex.h"
#include "daemon/core/audit/audit_log.h"
#include "daemon/core/audit/audit_verify.h"
#include "tests/support/daemon_process.h"

using namespace custody;
using namespace custody::test;
namespace json = boost::json;

namespace {

json::value attest(Daemon& d, const std::string& nonce_b64) {
  auto r = d.service().call("POST", "/v1/attestation", json::serialize(json::value{{"nonce", nonce_b64}}));
  if (!r || r->status != 200) throw std::runtime_error("attestation failed: " + (r ? r->body : r.error()));
  return json::parse(r->body);
}


// What pkcs11-tool (OpenSC) says about each secret key: label → the set of its usage and access words.
std::map<std::string, std::set<std::string>> pkcs11_tool_view(const Daemon& d) {
  const std::string out = d.dir() + "/objects.txt";
  run("SOFTHSM2_CONF='" + d.token().conf + "' pkcs11-tool --module " + CUSTODY_SOFTHSM_MODULE + " --token-label " +
      d.token().label + " --login --pin " + d.token().pin + " --list-objects --type secrkey > " + out + " 2>/dev/null");
  std::map<std::string, std::set<std::string>> view;
  std::istringstream in(read_file(out));
  std::string line, label;
  while (std::getline(in, line)) {
    auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string name = line.substr(0, colon), value = line.substr(colon + 1);
    while (!name.empty() && name.front() == ' ') name.erase(0, 1);
    while (!value.empty() && value.front() == ' ') value.erase(0, 1);
    if (name == "label") label = value;
    if (name != "Usage" && name != "Access") continue;
    std::istringstream words(value);
    for (std::string w; std::getline(words, w, ',');) {
      while (!w.empty() && w.front() == ' ') w.erase(0, 1);
      view[label].insert(w);
    }
  }
  return view;
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);) out.push_back(l);
  return out;
}

std::string join(const std::vector<std::string>& lines) {
  std::string s;
  for (const auto& l : lines) s += l + "\n";
  return s;
}

// What an attacker who can rewrite the file does after changing record k: recompute every later
// prev so the hash chain holds again. Only a checkpoint signature can then tell.
std::vector<std::string> rechain(std::vector<std::string> lines, std::size_t from) {
  for (std::size_t i = from + 1; i < lines.size(); ++i) {
    auto o = json::parse(lines[i]).as_object();
    o["prev"] = core::audit_line_hash(lines[i - 1]).value();
    lines[i] = json::serialize(o);
  }
  return lines;
}

core::AuditVerification verify(const std::string& text, const std::string& pem) {
  std::istringstream in(text);
  return core::verify_audit_log(in, pem);
}

}  // namespace

TEST(AttestationE2E, OpenSslVerifiesTheReportAndRejectsAnyChange) {
  Daemon d;
  ASSERT_EQ(d.create_key("att", "aes-256-gcm", allow_me_everything()), 201);
  auto env = attest(d, base64_encode(to_bytes("fresh nonce")));
  auto report = base64_decode(field(env, "report"));
  auto signature = base64_decode(field(env, "signature"));
  write_file(d.dir() + "/report.json", std::string(report->begin(), report->end()));
  write_file(d.dir() + "/sig.der", std::string(signature->begin(), signature->end()));
  write_file(d.dir() + "/pub.pem", field(env, "public_key"));
  const std::string verify_cmd = "openssl dgst -sha256 -verify " + d.dir() + "/pub.pem -signature " + d.dir() +
                                 "/sig.der " + d.dir() + "/report.json >/dev/null 2>&1";
  ASSERT_EQ(run(verify_cmd), 0);
  // key_id is SHA-256 of the SubjectPublicKeyInfo DER, as anyone can recompute.
  ASSERT_EQ(run("openssl pkey -pubin -in " + d.dir() + "/pub.pem -outform DER -out " + d.dir() + "/pub.der"), 0);
  auto der = read_file(d.dir() + "/pub.der");
  EXPECT_EQ(field(env, "key_id"), sha256_hex(to_bytes(der)).value());

  const std::string original(report->begin(), report->end());
  for (std::size_t pos = 0; pos < original.size(); pos += 97) {
    std::string changed = original;
    changed[pos] ^= 0x01;
    write_file(d.dir() + "/report.json", changed);
    EXPECT_NE(run(verify_cmd), 0) << "a change at byte " << pos << " went unnoticed";
  }

  auto doc = json::parse(original);
  EXPECT_EQ(field(doc, "format"), "custody.attestation.v1");
  EXPECT_EQ(field(doc, "nonce"), base64_encode(to_bytes("fresh nonce")));
  EXPECT_EQ(field(doc.at("token"), "label"), d.token().label);
  EXPECT_EQ(field(doc.at("token").at("library"), "path"), CUSTODY_SOFTHSM_MODULE);
  EXPECT_EQ(doc.at("quorum").at("operators").as_array().size(), 3u);
  EXPECT_EQ(doc.at("quorum").at("required").at("schedule-destruction").as_int64(), 2);
  EXPECT_EQ(doc.at("audit").at("sequence").as_int64(), static_cast<std::int64_t>(d.audit_records().size()) - 1);
  EXPECT_EQ(field(doc.at("keys").at(0), "name"), "att");
}

TEST(AttestationE2E, ReportedAttributesEqualWhatPkcs11ToolReads) {
  Daemon d;
  ASSERT_EQ(d.create_key("aes", "aes-256-gcm", allow_me_everything()), 201);
  ASSERT_EQ(d.create_key("mac", "hmac-sha256", allow_me_everything()), 201);
  ASSERT_EQ(d.admin_operation("rotate-key", {{"name", "aes"}}).first, 201);
  auto env = attest(d, "");
  auto report = base64_decode(field(env, "report"));
  auto doc = json::parse(std::string(report->begin(), report->end()));
  const auto view = pkcs11_tool_view(d);
  // OpenSC 0.23 prints these usage flags for secret keys (not sign or derive).
  const std::pair<const char*, const char*> usage[] = {{"encrypt", "encrypt"}, {"decrypt", "decrypt"}, {"verify", "verify"},
                                                       {"wrap", "wrap"},       {"unwrap", "unwrap"}};
  const std::pair<const char*, const char*> access[] = {{"sensitive", "sensitive"},
                                                        {"always_sensitive", "always sensitive"},
                                                        {"extractable", "extractable"},
                                                        {"never_extractable", "never extractable"},
                                                        {"local", "local"}};
  int compared = 0;
  for (const auto& key : doc.at("keys").as_array()) {
    for (const auto& v : key.at("versions").as_array()) {
      const auto& object = v.at("object");
      const std::string label = field(object, "label");
      ASSERT_TRUE(view.count(label)) << "pkcs11-tool does not list " << label;
      const auto& words = view.at(label);
      using Words = std::span<const std::pair<const char*, const char*>>;
      for (Words list : {Words(usage), Words(access)}) {
        for (const auto& [attr, word] : list) {
          EXPECT_EQ(object.at("attributes").at(attr).as_bool(), words.count(word) == 1) << label << " " << attr;
          ++compared;
        }
      }
    }
  }
  EXPECT_EQ(compared, 3 * 10);
}

TEST(AttestationE2E, TheAttestationKeyIsKeptAcrossRestarts) {
  Daemon d;
  auto before = attest(d, "");
  ASSERT_EQ(d.terminate(), 0);
  d.start();
  EXPECT_EQ(field(attest(d, ""), "key_id"), field(before, "key_id"));
}

// Daemons starting together on one SoftHSMv2 token can fail each other's C_GenerateKeyPair with
// CKR_FUNCTION_FAILED (p11::quirks::may_be_a_shared_store_race); the shim plays such races. A
// few are tried again; a token that keeps failing is still fatal, with the token's answer.
TEST(AttestationE2E, AKeyGenerationThatRacesAnotherProcessIsTriedAgainAndAPersistentFailureIsFatal) {
  DaemonOptions o;
  o.module = CUSTODY_FAULT_SHIM;
  o.env["CUSTODY_SHIM_RACES"] = "C_GenerateKeyPair:2";
  Daemon d(o);
  EXPECT_FALSE(field(attest(d, ""), "key_id").empty());
  EXPECT_NE(d.log().find("CKR_FUNCTION_FAILED (0x6); trying again"), std::string::npos) << d.log();

  o.env["CUSTODY_SHIM_RACES"] = "C_GenerateKeyPair:1000";
  try {
    Daemon never(o);
    FAIL() << "custodyd started although every C_GenerateKeyPair failed";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("cannot generate the attestation key: C_GenerateKeyPair: CKR_FUNCTION_FAILED"),
              std::string::npos)
        << e.what();
  }
}

TEST(AuditCheckpointsE2E, EveryMutationIsFoundAndTheFirstBadRecordNamed) {
  DaemonOptions o;
  o.extra_yaml = "";
  Daemon d(o);
  // Checkpoints every 5 records for this test.
  ASSERT_EQ(d.terminate(), 0);
  write_file(d.config_path(), [&] {
    auto c = read_file(d.config_path());
    c.replace(c.find("  durability: group"), std::string("  durability: group").size(), "  durability: group\n  checkpoint_every: 5");
    return c;
  }());
  d.start();
  ASSERT_EQ(d.create_key("k", "aes-256-gcm", allow_me_everything()), 201);
  for (int i = 0; i < 30; ++i) ASSERT_EQ(d.post("/v1/keys/k/wrap", {{"plaintext", "aGk="}}).first, 200);
  auto env = attest(d, "");
  const std::string pem = field(env, "public_key");
  ASSERT_EQ(d.terminate(), 0);
  const auto lines = lines_of(read_file(d.audit_path()));
  auto good = verify(join(lines), pem);
  ASSERT_TRUE(good.ok) << good.problem;
  EXPECT_GE(good.checkpoints, 10u);
  EXPECT_EQ(good.after_last_checkpoint, 0u);  // the closing checkpoint covers everything

  std::vector<std::size_t> checkpoints;
  for (std::size_t i = 0; i < lines.size(); ++i)
    if (json::parse(lines[i]).at("type") == "checkpoint") checkpoints.push_back(i);
  ASSERT_GE(checkpoints.size(), 3u);

  // A flipped byte in each of a sample of records: caught at that record or the next.
  for (std::size_t k = 0; k + 1 < lines.size(); k += 3) {
    auto m = lines;
    m[k][m[k].size() / 2] ^= 0x01;
    auto r = verify(join(m), pem);
    ASSERT_FALSE(r.ok) << "record " << k;
    EXPECT_TRUE(r.first_bad_line == k + 1 || r.first_bad_line == k + 2) << r.first_bad_line << " for " << k;
  }
  // A changed record with the chain recomputed after it: the next checkpoint's signature fails.
  {
    std::size_t k = checkpoints[1] - 2;
    auto m = lines;
    auto o = json::parse(m[k]).as_object();
    o["result"] = "permission_denied";
    m[k] = json::serialize(o);
    auto r = verify(join(rechain(m, k)), pem);
    ASSERT_FALSE(r.ok);
    EXPECT_EQ(r.first_bad_line, checkpoints[1] + 1);
    EXPECT_TRUE(verify(join(rechain(m, k)), "").ok) << "without the key only the chain is checked";
  }
  auto deleted = lines;
  deleted.erase(deleted.begin() + 7);
  EXPECT_EQ(verify(join(deleted), pem).first_bad_line, 8u);
  auto swapped = lines;
  std::swap(swapped[9], swapped[10]);
  EXPECT_EQ(verify(join(swapped), pem).first_bad_line, 10u);
  std::string truncated = join(lines);
  truncated.resize(truncated.size() - 10);
  EXPECT_EQ(verify(truncated, pem).first_bad_line, lines.size());
  auto dropped = lines;
  dropped.erase(dropped.begin() + static_cast<long>(checkpoints[0]));
  EXPECT_EQ(verify(join(dropped), pem).first_bad_line, checkpoints[0] + 1);
  // A checkpoint signed by another key (the chain recomputed to match).
  {
    EVP_PKEY* other = EVP_EC_gen("P-256");
    auto m = lines;
    const std::size_t k = checkpoints[0];
    auto o = json::parse(m[k]).as_object();
    const std::string message = core::checkpoint_message(static_cast<std::uint64_t>(o.at("seq").as_int64()),
                                                         std::string(o.at("prev").as_string()));
    EVP_MD_CTX* ctx = EVP_MD_CTX_new();
    std::size_t len = 0;
    EVP_DigestSignInit(ctx, nullptr, EVP_sha256(), nullptr, other);
    EVP_DigestSign(ctx, nullptr, &len, reinterpret_cast<const unsigned char*>(message.data()), message.size());
    Bytes sig(len);
    EVP_DigestSign(ctx, sig.data(), &len, reinterpret_cast<const unsigned char*>(message.data()), message.size());
    sig.resize(len);
    EVP_MD_CTX_free(ctx);
    EVP_PKEY_free(other);
    o["signature"] = base64_encode(sig);
    m[k] = json::serialize(o);
    auto r = verify(join(rechain(m, k)), pem);
    ASSERT_FALSE(r.ok);
    EXPECT_EQ(r.first_bad_line, k + 1);
    EXPECT_NE(r.problem.find("signature"), std::string::npos);
  }
  // The same through custodyctl, as an auditor would run it.
  write_file(d.dir() + "/pub.pem", pem);
  write_file(d.dir() + "/deleted.jsonl", join(deleted));
  EXPECT_EQ(run(std::string(CUSTODYCTL_PATH) + " audit verify " + d.audit_path() + " --public-key " + d.dir() +
                "/pub.pem >/dev/null"),
            0);
  EXPECT_EQ(run(std::string(CUSTODYCTL_PATH) + " audit verify " + d.dir() + "/deleted.jsonl --public-key " + d.dir() +
                "/pub.pem > " + d.dir() + "/out.txt"),
            4);
  EXPECT_NE(read_file(d.dir() + "/out.txt").find("line 8"), std::string::npos) << read_file(d.dir() + "/out.txt");
}

TEST(AuditCheckpointsE2E, RotationBySizeKeepsOneChainAcrossFiles) {
  DaemonOptions o;
  Daemon d(o);
  ASSERT_EQ(d.terminate(), 0);
  write_file(d.config_path(), [&] {
    auto c = read_file(d.config_path());
    c.replace(c.find("  durability: group"), std::string("  durability: group").size(), "  durability: group\n  max_file_bytes: 4096\n  checkpoint_every: 7");
    return c;
  }());
  d.start();
  ASSERT_EQ(d.create_key("k", "aes-256-gcm", allow_me_everything()), 201);
  for (int i = 0; i < 40; ++i) ASSERT_EQ(d.post("/v1/keys/k/wrap", {{"plaintext", "aGk="}}).first, 200);
  auto pem = field(attest(d, ""), "public_key");
  write_file(d.dir() + "/pub.pem", pem);
  ASSERT_EQ(d.terminate(), 0);
  std::vector<std::string> rotated;
  for (const auto& e : std::filesystem::directory_iterator(d.dir()))
    if (e.path().filename().string().rfind("audit.jsonl.", 0) == 0) rotated.push_back(e.path().string());
  std::sort(rotated.begin(), rotated.end());
  ASSERT_GE(rotated.size(), 3u);
  for (const auto& f : rotated) EXPECT_LE(std::filesystem::file_size(f), 4096u + 1024u);
  std::string all;
  for (const auto& f : rotated) all += " " + f;
  EXPECT_EQ(run(std::string(CUSTODYCTL_PATH) + " audit verify" + all + " " + d.audit_path() + " --public-key " + d.dir() +
                "/pub.pem >/dev/null"),
            0);
  // Leaving a middle file out breaks the chain where it was.
  std::string gap;
  for (std::size_t i = 0; i < rotated.size(); ++i)
    if (i != 1) gap += " " + rotated[i];
  EXPECT_EQ(run(std::string(CUSTODYCTL_PATH) + " audit verify" + gap + " " + d.audit_path() + " >/dev/null"), 4);
}
