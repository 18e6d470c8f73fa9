// custodyctl against a live daemon: round trips through pipes and files, and exit codes scripts
// can rely on.
#include <gtest/gtest.h>

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

TEST_F(CustodyctlE2E, ApproveAsksFirstAndAnswerNoApprovesNothing) {
  ASSERT_EQ(ctl("--json keys create asked --policy '[]' > " + path("asked.json")), 0);
  write_file(path("no.txt"), "n\n");
  write_file(path("yes.txt"), "y\n");
  const std::string id(boost::json::parse(read_file(path("asked.json"))).at("request").at("id").as_string());
  EXPECT_EQ(ctl("admin approve " + id + " --operator alice --key-file " + daemon_->operator_key("alice") + " < " +
                path("no.txt") + " > " + path("asked.out") + " 2>&1"),
            1);
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
  EXPECT_EQ(ctl("unwrap no-such-key --text Q1NUAQ== 2>/dev/null"), 1);
  EXPECT_EQ(ctl("--socket /nonexistent/socket health 2>/dev/null"), 3);
  EXPECT_EQ(ctl("wrap 2>/dev/null"), 2);
  EXPECT_EQ(ctl("frobnicate 2>/dev/null >/dev/null"), 2);
  EXPECT_EQ(ctl("wrap x --context novalue --text y 2>/dev/null"), 2);
  EXPECT_EQ(ctl("--help >/dev/null"), 0);
  EXPECT_EQ(ctl("audit verify /nonexistent 2>/dev/null"), 2);
}
