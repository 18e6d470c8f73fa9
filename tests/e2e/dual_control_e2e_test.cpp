// Dual control through a real daemon: approvals signed by custodyctl on an operator's own
// SoftHSMv2 token, by pkcs11-tool, and by openssl dgst all verify; refusals are audited;
// proposals that cannot run are refused when proposed; a crash at any step of a proposal, an
// approval or a cancel leaves every stored request, approval, execution and cancel audited.
#include <gtest/gtest.h>

#include <set>
#include <tuple>

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
  EXPECT_EQ(d.admin().call("GET", "/v1/keys/k2")->status, 404);        // nothing ran yet
  auto cancelled = d.admin().call("POST", "/v1/admin/requests/" + id + "/cancel");
  ASSERT_EQ(cancelled->status, 200);
  EXPECT_EQ(json::parse(cancelled->body).at("request").at("state").as_string(), "cancelled");
  EXPECT_EQ(submit(d, id, "bob", d.dir() + "/b.sig").first, 409);
  EXPECT_EQ(d.admin().call("GET", "/v1/keys/k2")->status, 404);
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

namespace {

// Proposes without approving; the status and body of the answer.
std::pair<int, json::value> propose_only(Daemon& d, const std::string& operation, json::object params) {
  auto r = d.admin().call("POST", "/v1/admin/requests",
                          json::serialize(json::value{{"operation", operation}, {"params", std::move(params)}}));
  if (!r) throw std::runtime_error("no answer to a proposal");
  return {r->status, json::parse(r->body)};
}

}  // namespace

// A request that could not run is refused when it is proposed, with the code it would fail
// with, so operators never sign it; the refusal is audited and no request is left behind.
TEST(DualControlE2E, ProposalsThatCannotRunAreRefusedWhenProposed) {
  Daemon d;  // lifecycle.min_destruction_wait: the 7-day default
  ASSERT_EQ(d.create_key("k", "aes-256-gcm", allow_me_everything()), 201);
  const auto policy = json::parse(allow_me_everything());
  const std::string rsa_method = "rsa-oaep-3072-sha1-aes-256";
  const std::vector<std::tuple<std::string, json::object, int>> cases = {
      {"schedule-destruction", {{"name", "k"}, {"wait_seconds", 1}}, 400},  // below the minimum
      {"schedule-destruction", {{"name", "nope"}, {"wait_seconds", 30 * 86400}}, 404},
      {"rotate-key", {{"name", "nope"}}, 404},
      {"disable-key", {{"name", "nope"}}, 404},
      {"enable-key", {{"name", "nope"}}, 404},
      {"set-policy", {{"name", "nope"}, {"policy", policy}}, 404},
      {"cancel-destruction", {{"name", "k"}}, 409},  // not scheduled
      {"create-key", {{"name", "k"}, {"algorithm", "aes-256-gcm"}, {"policy", policy}}, 409},  // exists
      {"set-min-decrypt-version", {{"name", "k"}, {"version", 2}}, 409},  // beyond the current version 1
      {"set-min-decrypt-version", {{"name", "nope"}, {"version", 1}}, 404},
      {"set-policy", {{"name", "k"}, {"policy", "not a list"}}, 400},
      // An import job for a generated key, and one through a transport key that does not exist.
      {"create-import-job", {{"key_name", "k"}, {"algorithm", "aes-256-gcm"}, {"method", rsa_method}}, 409},
      {"create-import-job",
       {{"key_name", "new"}, {"algorithm", "aes-256-gcm"}, {"method", "aes-kwp"}, {"transport_key", "no-such-transport"}},
       404},
      {"create-import-job",
       {{"key_name", "new"}, {"algorithm", "aes-256-gcm"}, {"method", "aes-kwp"}, {"transport_key", "k"}},
       409},  // not a transport key
  };
  for (const auto& [operation, params, status] : cases) {
    auto [s, body] = propose_only(d, operation, params);
    EXPECT_EQ(s, status) << operation << " " << json::serialize(params) << ": " << json::serialize(body);
  }
  auto list = json::parse(d.admin().call("GET", "/v1/admin/requests")->body);
  EXPECT_EQ(list.at("requests").as_array().size(), 1u) << "only the create-key of k is a request";
  int refused = 0;
  for (const auto& r : d.audit_records())
    refused += r.at("type") == "admin.propose" && r.at("result") != "ok";
  EXPECT_EQ(refused, static_cast<int>(cases.size()));

  // What can run is still accepted, and runs.
  EXPECT_EQ(propose_only(d, "schedule-destruction", {{"name", "k"}, {"wait_seconds", 7 * 86400}}).first, 201);
  EXPECT_EQ(propose_only(d, "create-import-job", {{"key_name", "new"}, {"algorithm", "aes-256-gcm"}, {"method", rsa_method}}).first,
            201);
  EXPECT_EQ(d.admin_operation("rotate-key", {{"name", "k"}}).first, 201);
  EXPECT_EQ(d.admin_operation("set-min-decrypt-version", {{"name", "k"}, {"version", 2}}).first, 201);
}

// The checks are made again when the request runs: the keys can change after the proposal.
TEST(DualControlE2E, AProposalThatBecameImpossibleFailsWhenItRuns) {
  Daemon d;
  ASSERT_EQ(d.create_key("k", "aes-256-gcm", allow_me_everything()), 201);
  auto [s, proposed] = propose_only(d, "rotate-key", {{"name", "k"}});
  ASSERT_EQ(s, 201);
  const std::string id(proposed.at("request").at("id").as_string());
  ASSERT_EQ(d.admin_operation("disable-key", {{"name", "k"}}).first, 201);
  ASSERT_EQ(d.approve(id, "alice").first, 200);
  auto [s2, done] = d.approve(id, "bob");
  ASSERT_EQ(s2, 200);
  EXPECT_EQ(done.at("request").at("state").as_string(), "failed");
  EXPECT_EQ(done.at("request").at("error").at("code").as_string(), "failed_precondition");
}

// kill -9 (an immediate _exit) at each step of an approval that completes a quorum: after a
// restart the operation has run exactly once, and the audit log holds an admin.approve record
// for every approval the request holds and an admin.execute record for its execution, each
// naming the admin request and the operation (CONTRACT §9), and the chain verifies.
class ApprovalCrashE2E : public ::testing::TestWithParam<const char*> {};

TEST_P(ApprovalCrashE2E, EveryApprovalAndTheExecutionAreAuditedAfterACrash) {
  const std::string point = GetParam();
  DaemonOptions o;
  o.env["CUSTODY_FAULT_POINT"] = point;
  Daemon d(o);
  auto [s, proposed] = propose_only(d, "create-key",
                                    {{"name", "once"}, {"algorithm", "aes-256-gcm"}, {"policy", json::parse(allow_me_everything())}});
  ASSERT_EQ(s, 201) << json::serialize(proposed);
  const std::string id(proposed.at("request").at("id").as_string());
  int answered = 0;
  for (const char* op : {"alice", "bob"}) {
    if (d.approve(id, op).first != 200) break;
    ++answered;
  }
  EXPECT_LT(answered, 2) << "the daemon should have died";
  ASSERT_EQ(d.wait_exit(), 86) << "the fault point was not reached:\n" << d.log();

  d.options().env.clear();
  d.start();
  // Approvals the crash lost are given again.
  for (int i = 0; i < 3; ++i) {
    auto shown = json::parse(d.admin().call("GET", "/v1/admin/requests/" + id)->body);
    if (shown.at("request").at("state").as_string() != "pending") break;
    std::set<std::string> have;
    for (const auto& a : shown.at("request").at("approvals").as_array()) have.emplace(a.at("operator").as_string());
    for (const char* op : {"alice", "bob"})
      if (!have.count(op)) {
        ASSERT_EQ(d.approve(id, op).first, 200);
        break;
      }
  }
  auto request = json::parse(d.admin().call("GET", "/v1/admin/requests/" + id)->body).at("request");
  ASSERT_EQ(request.at("state").as_string(), "executed") << json::serialize(request);
  auto meta = json::parse(d.service().call("GET", "/v1/keys/once")->body);
  EXPECT_EQ(meta.at("current_version").as_int64(), 1) << json::serialize(meta);

  std::set<std::string> approved_in_audit;
  int executions = 0, recovered_executions = 0;
  for (const auto& r : d.audit_records()) {
    const auto* admin_request = r.if_contains("admin_request");
    if (!admin_request || *admin_request != json::value(id) || r.at("result") != "ok") continue;
    const std::string type(r.at("type").as_string());
    if (type != "admin.approve" && type != "admin.execute") continue;
    EXPECT_EQ(r.at("operation"), "create-key") << json::serialize(r);
    EXPECT_EQ(r.at("key"), "once") << json::serialize(r);
    if (type == "admin.approve") {
      approved_in_audit.emplace(r.at("operator").as_string());
    } else {
      ++executions;
      if (const auto* rec = r.if_contains("recovered"); rec && *rec == true) ++recovered_executions;
      EXPECT_EQ(r.at("approved_by"), json::value(json::array{"alice", "bob"})) << json::serialize(r);
    }
  }
  for (const auto& a : request.at("approvals").as_array())
    EXPECT_TRUE(approved_in_audit.count(std::string(a.at("operator").as_string())))
        << "approval by " << a.at("operator") << " has no admin.approve record";
  EXPECT_GE(executions, 1) << "the execution has no admin.execute record";
  // A crash once the quorum was stored leaves the execution to recovery, which says so.
  if (point != "admin.after-approve-record") {
    EXPECT_EQ(recovered_executions, 1);
  }
  EXPECT_EQ(run(std::string(CUSTODYCTL_PATH) + " audit verify " + d.audit_path() + " >/dev/null"), 0);
}

INSTANTIATE_TEST_SUITE_P(EveryStep, ApprovalCrashE2E,
                         ::testing::Values("admin.after-approve-record", "admin.after-quorum", "admin.after-execute",
                                           "admin.after-execute-record"),
                         [](const auto& info) {
                           std::string n = info.param;
                           for (auto& ch : n)
                             if (ch == '.' || ch == '-') ch = '_';
                           return n;
                         });

namespace {

// How many records of type name admin request id with result "ok".
int ok_records(const std::vector<json::object>& audit, const std::string& type, const std::string& id) {
  int n = 0;
  for (const auto& r : audit) {
    const auto* admin_request = r.if_contains("admin_request");
    n += admin_request && *admin_request == json::value(id) && r.at("type") == json::value(type) && r.at("result") == "ok";
  }
  return n;
}

}  // namespace

// kill -9 (an immediate _exit) at each step of a proposal and of a cancel. After a restart every
// stored request has its admin.propose record and every cancelled one its admin.cancel record
// (CONTRACT §9), each naming the admin request and the operation; a proposal recorded but never
// stored answers 404 and cannot be approved; and the chain verifies.
class ProposalAndCancelCrashE2E : public ::testing::TestWithParam<const char*> {};

TEST_P(ProposalAndCancelCrashE2E, EveryStoredRequestAndEveryCancelAreAuditedAfterACrash) {
  const std::string point = GetParam();
  const bool in_cancel = point.find("cancel") != std::string::npos;
  DaemonOptions o;
  o.env["CUSTODY_FAULT_POINT"] = point;
  Daemon d(o);
  const json::object params{{"name", "k"}, {"algorithm", "aes-256-gcm"}, {"policy", json::parse(allow_me_everything())}};
  std::string cancelled_id;
  if (in_cancel) {
    auto [s, proposed] = propose_only(d, "create-key", params);
    ASSERT_EQ(s, 201) << json::serialize(proposed);
    cancelled_id = std::string(proposed.at("request").at("id").as_string());
    auto r = d.admin().call("POST", "/v1/admin/requests/" + cancelled_id + "/cancel");
    EXPECT_FALSE(r && r->status == 200) << "the daemon should have died";
  } else {
    auto r = d.admin().call("POST", "/v1/admin/requests",
                            json::serialize(json::value{{"operation", "create-key"}, {"params", params}}));
    EXPECT_FALSE(r && r->status == 201) << "the daemon should have died";
  }
  ASSERT_EQ(d.wait_exit(), 86) << "the fault point was not reached:\n" << d.log();

  d.options().env.clear();
  d.start();
  const auto audit = d.audit_records();
  // The one proposal was recorded, stored or not, naming its request and operation.
  std::vector<std::string> recorded;
  for (const auto& r : audit)
    if (r.at("type") == "admin.propose" && r.at("result") == "ok") {
      recorded.emplace_back(r.at("admin_request").as_string());
      EXPECT_EQ(r.at("operation"), "create-key") << json::serialize(r);
      EXPECT_EQ(r.at("key"), "k") << json::serialize(r);
    }
  ASSERT_EQ(recorded.size(), 1u) << "the proposal has no admin.propose record, or more than one";
  const std::string id = recorded[0];
  if (in_cancel) {
    EXPECT_EQ(id, cancelled_id);
  }

  auto listed = json::parse(d.admin().call("GET", "/v1/admin/requests")->body).at("requests").as_array();
  for (const auto& entry : listed) {
    const auto& request = entry.at("request");
    const std::string stored_id(request.at("id").as_string());
    EXPECT_EQ(ok_records(audit, "admin.propose", stored_id), 1) << "stored request " << stored_id << " has no admin.propose record";
    if (request.at("state") == "cancelled") {
      EXPECT_GE(ok_records(audit, "admin.cancel", stored_id), 1) << "cancelled request " << stored_id << " has no admin.cancel record";
    }
  }

  auto state_of = [&d](const std::string& request_id) -> std::string {
    auto shown = d.admin().call("GET", "/v1/admin/requests/" + request_id);
    if (shown->status != 200) return std::to_string(shown->status);
    return std::string(json::parse(shown->body).at("request").at("state").as_string());
  };
  if (point == "admin.after-propose-record") {
    // A record of a request that does not exist: it is not listed, answers 404, and nothing can
    // approve it.
    EXPECT_TRUE(listed.empty());
    EXPECT_EQ(state_of(id), "404");
    auto approval = d.admin().call("POST", "/v1/admin/requests/" + id + "/approvals",
                                   json::serialize(json::value{{"operator", "alice"}, {"signature", "AAAA"}}));
    EXPECT_EQ(approval->status, 404);
  } else if (point == "admin.after-propose-commit") {
    EXPECT_EQ(listed.size(), 1u);
    EXPECT_EQ(state_of(id), "pending");
  } else if (point == "admin.after-cancel-record") {
    // A record of a cancel that did not take: the request is still open, and is cancelled again.
    EXPECT_EQ(state_of(id), "pending");
    EXPECT_EQ(ok_records(audit, "admin.cancel", id), 1);
    ASSERT_EQ(d.admin().call("POST", "/v1/admin/requests/" + id + "/cancel")->status, 200);
    EXPECT_EQ(ok_records(d.audit_records(), "admin.cancel", id), 2);
  } else {
    EXPECT_EQ(state_of(id), "cancelled");
    EXPECT_EQ(ok_records(audit, "admin.cancel", id), 1);
  }
  if (in_cancel) {
    EXPECT_EQ(state_of(id), "cancelled");
    EXPECT_EQ(d.approve(id, "alice").first, 409);
  }
  EXPECT_EQ(d.admin().call("GET", "/v1/keys/k")->status, 404) << "nothing ran";
  EXPECT_EQ(run(std::string(CUSTODYCTL_PATH) + " audit verify " + d.audit_path() + " >/dev/null"), 0);
}

INSTANTIATE_TEST_SUITE_P(EveryStep, ProposalAndCancelCrashE2E,
                         ::testing::Values("admin.after-propose-record", "admin.after-propose-commit",
                                           "admin.after-cancel-record", "admin.after-cancel-commit"),
                         [](const auto& info) {
                           std::string n = info.param;
                           for (auto& ch : n)
                             if (ch == '.' || ch == '-') ch = '_';
                           return n;
                         });
