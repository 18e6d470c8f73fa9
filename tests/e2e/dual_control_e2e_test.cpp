// Dual control through a real daemon: approvals signed by custodyctl on an operator's own
// SoftHSMv2 token, by pkcs11-tool, and by openssl dgst all verify; refusals are audited.
#include <gtest/gtest.h>

#include "common/base64.h"
#include "tests/support/daemon_process.h"

using namespace custody;
using namespace custody::test;
namespace json = boost::json;

namespace {

constexpr const char* kModule = CUSTODY_SOFTHSM_MODULE;

// An operator's own token with an EC P-256 key labelled "approval", as dev-up makes them.
struct OperatorToken {
  explicit OperatorToken(const std::string& label) {
    files = make_softhsm_token(dir.path(), label);
    env = "SOFTHSM2_CONF='" + files.conf + "' ";
    const std::string tool = env + "pkcs11-tool --module " + kModule + " --token-label " + label;
    if (run(tool + " --login --pin " + files.pin +
            " --keypairgen --key-type EC:prime256v1 --usage-sign --label approval --id 01 >/dev/null 2>&1") != 0 ||
        run(tool + " --read-object --type pubkey --label approval -o " + dir.path() + "/pub.der >/dev/null 2>&1") != 0 ||
        run("openssl pkey -pubin -inform DER -in " + dir.path() + "/pub.der -out " + pub() + " 2>/dev/null") != 0)
      throw std::runtime_error("cannot make the operator token " + label);
  }
  std::string pub() const { return dir.path() + "/pub.pem"; }
  TempDir dir;
  TokenFiles files;
  std::string env;
};

std::string propose(Daemon& d, const std::string& operation, json::object params) {
  auto r = d.admin().call("POST", "/v1/admin/requests",
                          json::serialize(json::value{{"operation", operation}, {"params", std::move(params)}}));
  auto body = json::parse(r->body);
  if (r->status != 201) throw std::runtime_error("proposal refused: " + r->body);
  write_file(d.dir() + "/challenge.bin", *[&] {
    static std::string c;
    auto bytes = base64_decode(std::string(body.at("challenge").as_string()));
    c.assign(bytes->begin(), bytes->end());
    return &c;
  }());
  return std::string(body.at("request").at("id").as_string());
}

std::pair<int, json::value> submit(Daemon& d, const std::string& id, const std::string& op, const std::string& sig_file) {
  json::value body = {{"operator", op}, {"signature", base64_encode(to_bytes(read_file(sig_file)))}};
  auto r = d.admin().call("POST", "/v1/admin/requests/" + id + "/approvals", json::serialize(body));
  return {r->status, json::parse(r->body)};
}

}  // namespace

TEST(DualControlE2E, ApprovalsFromTokensPkcs11ToolAndOpenSslAllVerify) {
  OperatorToken a("operator-a"), b("operator-b");
  DaemonOptions o;
  o.extra_operators = {{"op-a", a.pub()}, {"op-b", b.pub()}};
  Daemon d(o);

  // custodyctl on operator-a's token, then pkcs11-tool on operator-b's token.
  const std::string id = propose(d, "create-key", {{"name", "k1"}, {"algorithm", "aes-256-gcm"},
                                                   {"policy", json::parse(allow_me_everything())}});
  EXPECT_EQ(run(a.env + "CUSTODY_ADMIN_SOCKET=" + d.admin_socket() + " " + CUSTODYCTL_PATH + " admin approve " + id +
                " --operator op-a --module " + kModule + " --token-label operator-a --pin-file " + a.files.pin_file +
                " --yes > " + d.dir() + "/approve.out"),
            0)
      << read_file(d.dir() + "/approve.out");
  EXPECT_NE(read_file(d.dir() + "/approve.out").find("create key 'k1'"), std::string::npos);
  ASSERT_EQ(run("openssl dgst -sha256 -binary " + d.dir() + "/challenge.bin > " + d.dir() + "/digest.bin"), 0);
  ASSERT_EQ(run(b.env + "pkcs11-tool --module " + kModule + " --token-label operator-b --login --pin " + b.files.pin +
                " --sign -m ECDSA --signature-format openssl --label approval -i " + d.dir() + "/digest.bin -o " +
                d.dir() + "/b.sig >/dev/null 2>&1"),
            0);
  auto [s, done] = submit(d, id, "op-b", d.dir() + "/b.sig");
  ASSERT_EQ(s, 200) << json::serialize(done);
  EXPECT_EQ(done.at("request").at("state").as_string(), "executed");

  // openssl dgst with an EC key file and an RSA-PSS key file.
  const std::string id2 = propose(d, "rotate-key", {{"name", "k1"}});
  const std::string ch = d.dir() + "/challenge.bin";
  ASSERT_EQ(run("openssl dgst -sha256 -sign " + d.operator_key("alice") + " -out " + d.dir() + "/alice.sig " + ch), 0);
  ASSERT_EQ(run("openssl dgst -sha256 -sign " + d.operator_key("carol") +
                " -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:32 -sigopt rsa_mgf1_md:sha256 -out " + d.dir() +
                "/carol.sig " + ch),
            0);
  EXPECT_EQ(submit(d, id2, "alice", d.dir() + "/alice.sig").first, 200);
  auto [s2, rotated] = submit(d, id2, "carol", d.dir() + "/carol.sig");
  ASSERT_EQ(s2, 200);
  EXPECT_EQ(rotated.at("request").at("state").as_string(), "executed");
  EXPECT_EQ(rotated.at("request").at("result").at("key").at("current_version").as_int64(), 2);
}

TEST(DualControlE2E, RefusalsAreAuditedAndChangeNothing) {
  Daemon d;
  const std::string id = propose(d, "create-key", {{"name", "k2"}, {"algorithm", "aes-256-gcm"}});
  const std::string ch = d.dir() + "/challenge.bin";
  ASSERT_EQ(run("openssl dgst -sha256 -sign " + d.operator_key("alice") + " -out " + d.dir() + "/a.sig " + ch), 0);
  ASSERT_EQ(run("openssl dgst -sha256 -sign " + d.operator_key("bob") + " -out " + d.dir() + "/b.sig " + ch), 0);
  EXPECT_EQ(submit(d, id, "mallory", d.dir() + "/a.sig").first, 403);  // unknown operator
  EXPECT_EQ(submit(d, id, "bob", d.dir() + "/a.sig").first, 403);      // alice's signature claimed by bob
  write_file(d.dir() + "/junk.sig", "not a DER signature");
  EXPECT_EQ(submit(d, id, "alice", d.dir() + "/junk.sig").first, 400);
  EXPECT_EQ(submit(d, id, "alice", d.dir() + "/a.sig").first, 200);
  EXPECT_EQ(submit(d, id, "alice", d.dir() + "/a.sig").first, 409);  // the same operator twice
  const std::string other = propose(d, "create-key", {{"name", "k3"}, {"algorithm", "aes-256-gcm"}});
  EXPECT_EQ(submit(d, other, "bob", d.dir() + "/b.sig").first, 403);  // a signature over another challenge
  EXPECT_EQ(d.service().call("GET", "/v1/keys/k2")->status, 404);      // nothing ran yet
  auto cancelled = d.admin().call("POST", "/v1/admin/requests/" + id + "/cancel");
  ASSERT_EQ(cancelled->status, 200);
  EXPECT_EQ(json::parse(cancelled->body).at("request").at("state").as_string(), "cancelled");
  EXPECT_EQ(submit(d, id, "bob", d.dir() + "/b.sig").first, 409);
  EXPECT_EQ(d.service().call("GET", "/v1/keys/k2")->status, 404);
  auto bad_b64 = d.admin().call("POST", "/v1/admin/requests/" + other + "/approvals", R"({"operator":"bob","signature":"%%%"})");
  EXPECT_EQ(bad_b64->status, 400);

  int refused = 0, good = 0;
  for (const auto& r : d.audit_records()) {
    if (r.at("type").as_string() != "admin.approve") continue;
    (r.at("result").as_string() == "ok" ? good : refused)++;
  }
  EXPECT_EQ(good, 1);
  EXPECT_EQ(refused, 7);
}

TEST(DualControlE2E, AConfigBelowTheMinimumQuorumIsRefusedAtStart) {
  DaemonOptions o;
  o.extra_yaml = "  quorum: {schedule-destruction: 1}\n";
  EXPECT_THROW(Daemon d(o), std::runtime_error);
}
