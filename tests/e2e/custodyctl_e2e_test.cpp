// custodyctl against a live daemon: round trips through pipes and files, and exit codes scripts
// can rely on.
#include <gtest/gtest.h>

#include "common/admin_operations.h"
#include "common/base64.h"
#include "tests/support/daemon_process.h"

using namespace custody;
using namespace custody::test;

namespace {

class CustodyctlE2E : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { daemon_ = new Daemon(); }
  static void TearDownTestSuite() {
    delete daemon_;
    daemon_ = nullptr;
  }
  int ctl(const std::string& args) {
    return run("CUSTODY_SERVICE_SOCKET='" + daemon_->service_socket() + "' CUSTODY_ADMIN_SOCKET='" +
               daemon_->admin_socket() + "' " + CUSTODYCTL_PATH + " " + args);
  }
  std::string path(const std::string& name) { return daemon_->dir() + "/" + name; }
  // Proposes with custodyctl --json, then approves as alice and bob with custodyctl.
  int propose_and_approve(const std::string& args) {
    if (int rc = ctl("--json " + args + " > " + path("proposal.json")); rc != 0) return rc;
    const std::string id(boost::json::parse(read_file(path("proposal.json"))).at("request").at("id").as_string());
    for (const char* op : {"alice", "bob"}) {
      if (int rc = ctl("admin approve " + id + " --operator " + op + " --key-file " + daemon_->operator_key(op) +
                       " --yes >/dev/null");
          rc != 0)
        return rc;
    }
    return 0;
  }
  static Daemon* daemon_;
};
Daemon* CustodyctlE2E::daemon_ = nullptr;

}  // namespace

TEST_F(CustodyctlE2E, CreatesKeysAndRoundTripsThroughPipesAndFiles) {
  ASSERT_EQ(propose_and_approve("keys create ctl-key --policy '" + allow_me_everything() + "'"), 0);
  ASSERT_EQ(propose_and_approve("keys create ctl-derive --algorithm hmac-sha256 --policy '" + allow_me_everything() + "'"), 0);
  write_file(path("plain.bin"), std::string("binary\0data\n\xff", 13));
  ASSERT_EQ(ctl("wrap ctl-key --in " + path("plain.bin") + " --context app=test --out " + path("ct.txt")), 0);
  ASSERT_EQ(ctl("unwrap ctl-key --in " + path("ct.txt") + " --context app=test --out " + path("back.bin")), 0);
  EXPECT_EQ(read_file(path("back.bin")), read_file(path("plain.bin")));
  ASSERT_EQ(ctl("wrap ctl-key --text piped | " + std::string(CUSTODYCTL_PATH) + " --socket " + daemon_->service_socket() +
                " unwrap ctl-key > " + path("piped.txt")),
            0);
  EXPECT_EQ(read_file(path("piped.txt")), "piped");
  ASSERT_EQ(propose_and_approve("keys rotate ctl-key"), 0);
  ASSERT_EQ(ctl("rewrap ctl-key --in " + path("ct.txt") + " --context app=test --out " + path("ct2.txt")), 0);
  ASSERT_EQ(ctl("--json keys show ctl-key > " + path("show.json")), 0);
  EXPECT_EQ(boost::json::parse(read_file(path("show.json"))).at("current_version").as_int64(), 2);
  ASSERT_EQ(ctl("derive ctl-derive --info abc --length 16 --hex > " + path("d1.txt")), 0);
  ASSERT_EQ(ctl("derive ctl-derive --info abc --length 16 --hex > " + path("d2.txt")), 0);
  EXPECT_EQ(read_file(path("d1.txt")).size(), 33u);
  EXPECT_EQ(read_file(path("d1.txt")), read_file(path("d2.txt")));
  EXPECT_EQ(ctl("datakey ctl-key --length 16 >/dev/null"), 0);
  EXPECT_EQ(ctl("health >/dev/null"), 0);
}

TEST_F(CustodyctlE2E, KeysCreateProposesRecoveryOnlyWhenAsked) {
  ASSERT_EQ(ctl("--json keys create kept --recovery --policy '[]' > " + path("kept.json") + " 2>/dev/null"), 0);
  ASSERT_EQ(ctl("--json keys create plain --policy '[]' > " + path("plain.json") + " 2>/dev/null"), 0);
  const auto kept = boost::json::parse(read_file(path("kept.json"))).at("request").at("params").as_object();
  const auto plain = boost::json::parse(read_file(path("plain.json"))).at("request").at("params").as_object();
  ASSERT_TRUE(kept.contains("recovery")) << kept;
  EXPECT_TRUE(kept.at("recovery").as_bool());
  EXPECT_FALSE(plain.contains("recovery")) << plain;
}

TEST_F(CustodyctlE2E, ApproveAsksFirstAndAnswerNoApprovesNothing) {
  ASSERT_EQ(ctl("--json keys create asked --policy '[]' > " + path("asked.json")), 0);
  write_file(path("no.txt"), "n\n");
  write_file(path("yes.txt"), "y\n");
  const std::string id(boost::json::parse(read_file(path("asked.json"))).at("request").at("id").as_string());
  // Declined: 5, not 1 (which says the daemon refused).
  EXPECT_EQ(ctl("admin approve " + id + " --operator alice --key-file " + daemon_->operator_key("alice") + " < " +
                path("no.txt") + " > " + path("asked.out") + " 2>&1"),
            5);
  // No answer at all (no terminal, nothing piped): a usage error that says to pass --yes.
  EXPECT_EQ(ctl("admin approve " + id + " --operator alice --key-file " + daemon_->operator_key("alice") +
                " < /dev/null > " + path("silent.out") + " 2>&1"),
            2);
  EXPECT_NE(read_file(path("silent.out")).find("--yes"), std::string::npos) << read_file(path("silent.out"));
  const auto out = read_file(path("asked.out"));
  EXPECT_NE(out.find("create key 'asked'"), std::string::npos) << out;
  EXPECT_NE(out.find("[y/N]"), std::string::npos) << out;
  auto shown = boost::json::parse(daemon_->admin().call("GET", "/v1/admin/requests/" + id)->body);
  EXPECT_TRUE(shown.at("request").at("approvals").as_array().empty());
  EXPECT_EQ(ctl("admin approve " + id + " --operator alice --key-file " + daemon_->operator_key("alice") + " < " +
                path("yes.txt") + " >/dev/null 2>&1"),
            0);
}

TEST_F(CustodyctlE2E, ExitCodesSayWhatWentWrong) {
  EXPECT_EQ(ctl("wrap no-such-key --text x 2>/dev/null"), 1);
  // A well-formed blob of a key that does not exist: the daemon's refusal.
  std::string blob = std::string("CST\x01", 4) + char(11) + "no-such-key" + std::string("\0\0\0\x01", 4) +
                     std::string(12 + 16 + 1, 'x');
  EXPECT_EQ(ctl("unwrap no-such-key --text " + base64_encode(to_bytes(blob)) + " 2>/dev/null"), 1);
  EXPECT_EQ(ctl("--socket /nonexistent/socket health 2>/dev/null"), 3);
  EXPECT_EQ(ctl("wrap 2>/dev/null"), 2);
  EXPECT_EQ(ctl("frobnicate 2>/dev/null >/dev/null"), 2);
  EXPECT_EQ(ctl("wrap x --context novalue --text y 2>/dev/null"), 2);
  EXPECT_EQ(ctl("--help >/dev/null"), 0);
  EXPECT_EQ(ctl("audit verify /nonexistent 2>/dev/null"), 2);
}

namespace {

// The audit records written so far: a check that a command was refused before anything was sent.
std::size_t audit_records(Daemon& d) { return d.audit_records().size(); }

}  // namespace

TEST_F(CustodyctlE2E, GlobalOptionsWorkAfterTheSubcommand) {
  ASSERT_EQ(ctl("keys create late --policy '[]' --json > " + path("late.json") + " 2>/dev/null"), 0);
  const auto proposal = boost::json::parse(read_file(path("late.json")));
  const std::string id(proposal.at("request").at("id").as_string());
  // The README's manual-approval recipe: --json after the subcommand, piped into jq.
  ASSERT_EQ(ctl("admin show " + id + " --json > " + path("show.json")), 0);
  EXPECT_EQ(boost::json::parse(read_file(path("show.json"))).at("challenge"), proposal.at("challenge"));
  // The sockets too, after the subcommand and its arguments.
  EXPECT_EQ(run(std::string(CUSTODYCTL_PATH) + " health --socket " + daemon_->service_socket() + " >/dev/null"), 0);
  EXPECT_EQ(run(std::string(CUSTODYCTL_PATH) + " admin list --admin-socket " + daemon_->admin_socket() + " --json > " +
                path("list.json")),
            0);
  EXPECT_TRUE(boost::json::parse(read_file(path("list.json"))).as_object().contains("requests"));
}

TEST_F(CustodyctlE2E, InputThatCanBeCheckedLocallyFailsWithExitTwoAndSendsNothing) {
  const auto before = audit_records(*daemon_);
  EXPECT_EQ(ctl("unwrap demo --text 'not base64!!' 2>" + path("local.err")), 2);
  EXPECT_NE(read_file(path("local.err")).find("not base64"), std::string::npos) << read_file(path("local.err"));
  EXPECT_EQ(ctl("unwrap demo --text Q1NUAQ== 2>/dev/null"), 2);  // "CST\x01" and nothing else
  EXPECT_EQ(ctl("rewrap demo --text aGVsbG8= 2>/dev/null"), 2);  // base64, but not a blob
  std::string other = std::string("CST\x01", 4) + char(5) + "other" + std::string("\0\0\0\x01", 4) + std::string(29, 'x');
  EXPECT_EQ(ctl("unwrap demo --text " + base64_encode(to_bytes(other)) + " 2>" + path("other.err")), 2);
  EXPECT_NE(read_file(path("other.err")).find("'other'"), std::string::npos) << read_file(path("other.err"));
  EXPECT_EQ(ctl("wrap 'Not A Name' --text x 2>/dev/null"), 2);
  EXPECT_EQ(ctl("wrap demo --in /dev/null 2>/dev/null"), 2);  // empty plaintext
  EXPECT_EQ(ctl("wrap demo --text x --context " + std::string(129, 'k') + "=v 2>/dev/null"), 2);
  EXPECT_EQ(ctl("wrap demo --text x --context a=1 --context a=2 2>/dev/null"), 2);
  EXPECT_EQ(ctl("derive demo --info " + std::string(1025, 'i') + " 2>/dev/null"), 2);
  EXPECT_EQ(ctl("derive demo --info-base64 --info '***' 2>/dev/null"), 2);
  EXPECT_EQ(ctl("attest --nonce '***' 2>/dev/null >/dev/null"), 2);
  EXPECT_EQ(ctl("keys create x --algorithm rsa --policy '[]' 2>/dev/null"), 2);
  EXPECT_EQ(audit_records(*daemon_), before) << "a locally refused command reached the daemon";
}

TEST_F(CustodyctlE2E, KeysCreateWithoutAPolicyIsRefusedUnlessNoPolicyIsGiven) {
  const auto before = audit_records(*daemon_);
  EXPECT_EQ(ctl("keys create nopolicy > " + path("nopolicy.out") + " 2>&1"), 2);
  EXPECT_NE(read_file(path("nopolicy.out")).find("--policy is required"), std::string::npos) << read_file(path("nopolicy.out"));
  EXPECT_EQ(audit_records(*daemon_), before);
  EXPECT_EQ(ctl("keys create nopolicy --policy '{}' 2>/dev/null"), 2);  // not a list of rules
  ASSERT_EQ(ctl("keys create nopolicy --no-policy > " + path("deliberate.out") + " 2>&1"), 0);
  EXPECT_NE(read_file(path("deliberate.out")).find("create key 'nopolicy'"), std::string::npos);
  // An explicit empty list goes through, with a warning.
  ASSERT_EQ(ctl("keys create emptypolicy --policy '[]' > /dev/null 2> " + path("empty.err")), 0);
  EXPECT_NE(read_file(path("empty.err")).find("nobody may use"), std::string::npos) << read_file(path("empty.err"));
}

TEST_F(CustodyctlE2E, AdminShowPrintsTheResultOfAnExecutedRequest) {
  ASSERT_EQ(propose_and_approve("keys create shown --policy '" + allow_me_everything() + "'"), 0);
  const std::string id(boost::json::parse(read_file(path("proposal.json"))).at("request").at("id").as_string());
  ASSERT_EQ(ctl("admin show " + id + " > " + path("shown.txt")), 0);
  const auto text = read_file(path("shown.txt"));
  EXPECT_NE(text.find("state:     executed"), std::string::npos) << text;
  EXPECT_NE(text.find("result:"), std::string::npos) << text;
  EXPECT_NE(text.find("\"shown\""), std::string::npos) << text;
}

TEST_F(CustodyctlE2E, AttestWithAPinnedKeyThatDoesNotVerifyShowsTheFailureFirstAndNoSummary) {
  ASSERT_EQ(run("openssl ecparam -name prime256v1 -genkey -noout -out " + path("other.key") + " && openssl pkey -in " +
                path("other.key") + " -pubout -out " + path("other.pub.pem")),
            0);
  EXPECT_EQ(ctl("attest --public-key " + path("other.pub.pem") + " > " + path("attest.out") + " 2>&1"), 4);
  const auto out = read_file(path("attest.out"));
  EXPECT_EQ(out.rfind("custodyctl: ATTESTATION NOT VERIFIED", 0), 0u) << out;
  EXPECT_EQ(out.find("signed by key_id"), std::string::npos) << out;
  EXPECT_EQ(out.find("token:"), std::string::npos) << out;
  EXPECT_EQ(out.find("generated in the token"), std::string::npos) << out;
  // The right key: verified first, then the summary.
  ASSERT_EQ(ctl("attest key | tail -n +2 > " + path("attest.pem")), 0);
  ASSERT_EQ(ctl("attest --public-key " + path("attest.pem") + " > " + path("good.out") + " 2>&1"), 0);
  const auto good = read_file(path("good.out"));
  EXPECT_EQ(good.rfind("signature: valid", 0), 0u) << good;
  EXPECT_NE(good.find("checked against the pinned public key"), std::string::npos) << good;
  EXPECT_EQ(ctl("attest --public-key /nonexistent.pem >/dev/null 2>&1"), 2);
}

TEST_F(CustodyctlE2E, AnUnknownAdminOperationListsEveryOperation) {
  EXPECT_EQ(ctl("admin propose frobnicate-key > " + path("unknown.out") + " 2>&1"), 2);
  const auto local = read_file(path("unknown.out"));
  // The daemon's own answer, for clients other than custodyctl.
  auto reply = daemon_->admin().call("POST", "/v1/admin/requests", R"({"operation":"frobnicate-key","params":{}})");
  ASSERT_TRUE(reply);
  EXPECT_EQ(reply->status, 400);
  for (auto op : custody::kAdminOperations) {
    EXPECT_NE(local.find(std::string(op)), std::string::npos) << op << " missing from: " << local;
    EXPECT_NE(reply->body.find(std::string(op)), std::string::npos) << op << " missing from: " << reply->body;
  }
}

TEST_F(CustodyctlE2E, DeriveWithAnAesKeySaysTheAlgorithmCannotDerive) {
  const std::string me = std::to_string(::getuid());
  ASSERT_EQ(propose_and_approve("keys create aes-only --policy '[{\"uid\":" + me +
                                ",\"operations\":[\"wrap\",\"unwrap\"]}]'"),
            0);
  EXPECT_EQ(ctl("derive aes-only --info x 2> " + path("derive.err")), 1);
  const auto err = read_file(path("derive.err"));
  EXPECT_NE(err.find("cannot derive"), std::string::npos) << err;
  EXPECT_NE(err.find("hmac-sha256"), std::string::npos) << err;
  // A caller the policy does not name still learns nothing about the key.
  EXPECT_EQ(ctl("derive no-such-key --info x 2> " + path("missing.err")), 1);
  EXPECT_NE(read_file(path("missing.err")).find("may not derive"), std::string::npos);
}
