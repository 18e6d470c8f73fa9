// Dual control in the core, with a real SQLite store, a fake clock, an executor that counts
// its calls and an audit recorder that keeps what it is given: quorum by distinct operators,
// every refusal, expiry, exactly-once execution, proposals, approvals, cancels and executions
// audited before they are stored.
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include <sqlite3.h>

#include <boost/json.hpp>
#include <stdexcept>

#include "cli/approval_signer.h"
#include "common/base64.h"
#include "common/pem.h"
#include "daemon/core/admin/admin_requests.h"
#include "tests/support/fake_clock.h"
#include "tests/support/softhsm_token.h"
#include "tests/support/store_approval.h"

using namespace custody;
using namespace custody::core;
using namespace std::chrono_literals;

namespace {

// Writes a fresh key pair: the private half to a PEM file, the public half returned as PEM.
std::string make_key(const std::string& private_path, bool rsa) {
  EVP_PKEY* key = rsa ? EVP_RSA_gen(2048) : EVP_EC_gen("P-256");
  FILE* f = std::fopen(private_path.c_str(), "w");
  PEM_write_PrivateKey(f, key, nullptr, nullptr, 0, nullptr, nullptr);
  std::fclose(f);
  std::string pem = public_key_pem(key).value();
  EVP_PKEY_free(key);
  return pem;
}

class DualControl : public ::testing::Test {
 protected:
  void SetUp() override {
    store_ = StateStore::open(dir_.path() + "/state.db").value();
    std::vector<std::pair<std::string, std::string>> keys;
    for (auto [name, rsa] : {std::pair{"alice", false}, std::pair{"bob", false}, std::pair{"carol", true}})
      keys.emplace_back(name, make_key(key(name), rsa));
    keys_ = keys;
    requests_ = make();
  }
  std::unique_ptr<AdminRequests> make() {
    auto ops = OperatorSet::from_pem(keys_);
    EXPECT_TRUE(ops) << ops.error();
    QuorumPolicy quorum{{{"rotate-key", 3}, {"enable-key", 1}}};
    auto r = std::make_unique<AdminRequests>(
        *store_, std::move(*ops), quorum, clock_, "instance-1", 15min,
        [](const std::string& op, const boost::json::object&) -> Outcome<void> {
          if (op == "bogus") return fail(Code::invalid_argument, "unknown operation");
          return {};
        },
        [this](const std::string& op, const boost::json::object& params, const std::string& id) -> Outcome<boost::json::object> {
          ++executed_[id];
          if (params.contains("explode")) throw std::runtime_error("the executor exploded");
          if (op == "disable-key") return fail(Code::failed_precondition, "key is pending destruction");
          return boost::json::object{{"ran", op}};
        },
        [](const std::string&, const boost::json::object&) { return boost::json::object{{"recomputed", true}}; },
        [this](std::vector<AuditEvent> events) {
          if (!audit_writable_) return false;
          for (auto& e : events) {
            if (on_record_) on_record_(e);
            records_.push_back(std::move(e));
          }
          return true;
        });
    EXPECT_TRUE(r->load());
    return r;
  }
  std::string key(const std::string& name) { return dir_.path() + "/" + name + ".pem"; }
  std::string sign(const std::string& name, const std::string& challenge) {
    return base64_encode(client::sign_with_key_file(key(name), challenge).value());
  }
  Outcome<StoredRequest> approve(const StoredRequest& r, const std::string& name) {
    return requests_->approve(r.id, name, sign(name, r.challenge), caller_);
  }
  // The stored form of request id, as a restart would load it.
  StoredRequest stored(const std::string& id) {
    auto all = store_->load_requests();
    EXPECT_TRUE(all);
    if (all)
      for (auto& r : *all)
        if (r.id == id) return r;
    ADD_FAILURE() << "request " << id << " is not stored";
    return {};
  }
  // The stored state of request id, "none" if it is not stored.
  std::string stored_state(const std::string& id) {
    auto all = store_->load_requests();
    EXPECT_TRUE(all);
    if (all)
      for (auto& r : *all)
        if (r.id == id) return r.state;
    return "none";
  }
  // Runs SQL on the state database through a second connection: a trigger made this way makes
  // the store's own statements fail as a real SQLite error would.
  void sql(const std::string& statement) {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open((dir_.path() + "/state.db").c_str(), &db), SQLITE_OK);
    char* error = nullptr;
    EXPECT_EQ(sqlite3_exec(db, statement.c_str(), nullptr, nullptr, &error), SQLITE_OK) << (error ? error : "");
    sqlite3_free(error);
    sqlite3_close(db);
  }
  std::vector<AuditEvent> records_of(const std::string& type) {
    std::vector<AuditEvent> out;
    for (const auto& e : records_)
      if (e.type == type) out.push_back(e);
    return out;
  }

  test::TempDir dir_;
  test::FakeClock clock_;
  std::unique_ptr<StateStore> store_;
  std::vector<std::pair<std::string, std::string>> keys_;
  std::unique_ptr<AdminRequests> requests_;
  std::map<std::string, int> executed_;
  std::vector<AuditEvent> records_;
  bool audit_writable_ = true;
  std::function<void(const AuditEvent&)> on_record_;
  const AdminCaller caller_{"req-1", Peer{1000, 1000, 42}};
  const AdminCaller daemon_{"-", Peer{0, 0, 1}};
};

const boost::json::object kParams{{"name", "k"}};

}  // namespace

TEST_F(DualControl, TheChallengeIsTheContractsDocument) {
  auto r = requests_->propose("create-key", kParams, caller_);
  ASSERT_TRUE(r);
  auto c = boost::json::parse(r->challenge).as_object();
  std::vector<std::string> keys;
  for (const auto& [k, v] : c) keys.emplace_back(k);
  EXPECT_EQ(keys, (std::vector<std::string>{"format", "id", "operation", "params", "created_at", "expires_at", "nonce",
                                            "instance_id"}));
  EXPECT_EQ(c.at("format").as_string(), "custody.admin-request.v1");
  EXPECT_EQ(c.at("id").as_string(), r->id);
  EXPECT_EQ(c.at("params"), boost::json::value(kParams));
  EXPECT_EQ(c.at("instance_id").as_string(), "instance-1");
  EXPECT_EQ(base64_decode(std::string(c.at("nonce").as_string()))->size(), 32u);
  EXPECT_EQ(r->required, 2u);
  EXPECT_EQ(stored(r->id).proposer_uid, 1000u);
  records_.clear();
  EXPECT_FALSE(requests_->propose("bogus", kParams, caller_));
  EXPECT_TRUE(records_.empty()) << "refusals are the caller's to audit";
}

TEST_F(DualControl, RunsOnceWhenDistinctOperatorsReachTheQuorum) {
  auto r = *requests_->propose("create-key", kParams, caller_);
  auto first = approve(r, "alice");
  ASSERT_TRUE(first);
  EXPECT_EQ(first->state, "pending");
  EXPECT_EQ(executed_[r.id], 0);
  auto twice = approve(r, "alice");
  ASSERT_FALSE(twice);
  EXPECT_EQ(twice.error().code, Code::failed_precondition);
  auto second = approve(r, "carol");  // RSA-PSS
  ASSERT_TRUE(second) << second.error().message;
  EXPECT_EQ(second->state, "executed");
  EXPECT_EQ(executed_[r.id], 1);
  EXPECT_NE(second->outcome->find("\"ran\":\"create-key\""), std::string::npos);
  auto late = approve(r, "bob");
  ASSERT_FALSE(late);
  EXPECT_EQ(late.error().code, Code::failed_precondition);
  EXPECT_EQ(executed_[r.id], 1);
}

TEST_F(DualControl, QuorumIsPerOperation) {
  auto one = *requests_->propose("enable-key", kParams, caller_);
  EXPECT_EQ(approve(one, "bob")->state, "executed");
  auto three = *requests_->propose("rotate-key", kParams, caller_);
  EXPECT_EQ(approve(three, "alice")->state, "pending");
  EXPECT_EQ(approve(three, "bob")->state, "pending");
  EXPECT_EQ(approve(three, "carol")->state, "executed");
}

TEST_F(DualControl, RefusesBadApprovalsAndChangesNothing) {
  auto r = *requests_->propose("create-key", kParams, caller_);
  auto other = *requests_->propose("create-key", boost::json::object{{"name", "other"}}, caller_);
  records_.clear();
  auto code = [&](const std::string& op, const std::string& sig) {
    auto a = requests_->approve(r.id, op, sig, caller_);
    return a ? Code::internal : a.error().code;
  };
  EXPECT_EQ(code("mallory", sign("alice", r.challenge)), Code::permission_denied);  // unknown operator
  EXPECT_EQ(code("bob", sign("alice", r.challenge)), Code::permission_denied);      // someone else's signature
  EXPECT_EQ(code("alice", sign("alice", other.challenge)), Code::permission_denied);  // another request's challenge
  EXPECT_EQ(code("alice", "!!notbase64"), Code::invalid_argument);
  EXPECT_EQ(code("alice", base64_encode(to_bytes("not DER"))), Code::invalid_argument);
  EXPECT_EQ(code("carol", base64_encode(to_bytes("short"))), Code::invalid_argument);
  auto still = requests_->get(r.id);
  EXPECT_EQ(still->state, "pending");
  EXPECT_TRUE(still->approvals.empty());
  EXPECT_EQ(executed_[r.id], 0);
  EXPECT_EQ(requests_->approve("no-such-id", "alice", sign("alice", r.challenge), caller_).error().code, Code::not_found);
  EXPECT_TRUE(records_.empty()) << "refusals are the caller's to audit";
}

TEST_F(DualControl, ExpiredAndCancelledRequestsAcceptNothing) {
  auto r = *requests_->propose("create-key", kParams, caller_);
  ASSERT_TRUE(approve(r, "alice"));
  clock_.advance(15min);
  EXPECT_EQ(requests_->get(r.id)->state, "expired");
  auto late = approve(r, "bob");
  ASSERT_FALSE(late);
  EXPECT_EQ(late.error().code, Code::failed_precondition);
  EXPECT_EQ(executed_[r.id], 0);

  auto c = *requests_->propose("create-key", kParams, caller_);
  ASSERT_TRUE(requests_->cancel(c.id, caller_));
  EXPECT_EQ(approve(c, "alice").error().code, Code::failed_precondition);
  EXPECT_EQ(requests_->cancel(c.id, caller_).error().code, Code::failed_precondition);
}

TEST_F(DualControl, AFailedOperationIsReportedNotRetried) {
  auto r = *requests_->propose("disable-key", kParams, caller_);
  ASSERT_TRUE(approve(r, "alice"));
  auto done = approve(r, "bob");
  ASSERT_TRUE(done);
  EXPECT_EQ(done->state, "failed");
  EXPECT_NE(done->outcome->find("failed_precondition"), std::string::npos);
  EXPECT_EQ(executed_[r.id], 1);
}

TEST_F(DualControl, RequestsSurviveARestartAndRecoveryIsExactlyOnce) {
  auto pending = *requests_->propose("create-key", kParams, caller_);
  ASSERT_TRUE(approve(pending, "alice"));
  // Two requests a crash left "executing": one whose change committed (applied), one not.
  auto applied = *requests_->propose("create-key", boost::json::object{{"name", "a"}}, caller_);
  auto unapplied = *requests_->propose("create-key", boost::json::object{{"name", "u"}}, caller_);
  for (const auto* r : {&applied, &unapplied})
    ASSERT_TRUE(test::store_approval(*store_, r->id, StoredApproval{"alice", "x", 0}, "executing"));
  Key k;
  k.name = "a";
  ASSERT_TRUE(store_->insert_key(k, 0, applied.id));  // the change and its "applied" mark, together

  requests_ = make();  // a restart
  records_.clear();
  EXPECT_EQ(requests_->get(pending.id)->approvals.size(), 1u);
  auto done = requests_->recover(daemon_);
  ASSERT_TRUE(done);
  EXPECT_EQ(done->size(), 2u);
  EXPECT_EQ(executed_[applied.id], 0);  // not run again
  EXPECT_NE(requests_->get(applied.id)->outcome->find("recomputed"), std::string::npos);
  EXPECT_EQ(executed_[unapplied.id], 1);  // run once
  EXPECT_EQ(requests_->get(unapplied.id)->state, "executed");
  // Both are audited as the daemon, naming request, operation and approvers, marked recovered.
  for (const auto* r : {&applied, &unapplied}) {
    SCOPED_TRACE(r->id);
    int approvals = 0, executions = 0;
    for (const auto& e : records_) {
      if (e.extra.at("admin_request").as_string() != r->id) continue;
      EXPECT_EQ(e.request_id, "-");
      EXPECT_EQ(e.operation, "create-key");
      EXPECT_EQ(e.key, r == &applied ? "a" : "u");
      EXPECT_TRUE(e.extra.at("recovered").as_bool());
      if (e.type == "admin.approve") {
        ++approvals;
        EXPECT_EQ(e.operator_name, "alice");
      } else if (e.type == "admin.execute") {
        ++executions;
        EXPECT_EQ(e.extra.at("approved_by"), boost::json::value(boost::json::array{"alice"}));
        EXPECT_EQ(e.result, "ok");
      }
    }
    EXPECT_EQ(approvals, 1);
    EXPECT_EQ(executions, 1);
  }
  records_.clear();
  EXPECT_TRUE(requests_->recover(daemon_)->empty());
  EXPECT_TRUE(records_.empty());
  // The pending request goes on where it was.
  EXPECT_EQ(approve(pending, "bob")->state, "executed");
}

TEST_F(DualControl, AnExecutionThatThrowsAtRecoveryIsRecordedAsFailedAndTheStartGoesOn) {
  auto bad = *requests_->propose("create-key", boost::json::object{{"name", "x"}, {"explode", true}}, caller_);
  auto good = *requests_->propose("create-key", boost::json::object{{"name", "g"}}, caller_);
  for (const auto* r : {&bad, &good})
    ASSERT_TRUE(test::store_approval(*store_, r->id, StoredApproval{"alice", "x", 0}, "executing"));
  requests_ = make();  // a restart
  records_.clear();
  // Before: the exception left recover() and the request executing, so every start threw again.
  auto done = requests_->recover(daemon_);
  ASSERT_TRUE(done) << done.error().message;
  EXPECT_EQ(done->size(), 2u);
  EXPECT_EQ(stored_state(bad.id), "failed");
  EXPECT_NE(stored(bad.id).outcome.value_or("").find("the executor exploded"), std::string::npos);
  EXPECT_EQ(stored_state(good.id), "executed");  // the requests after it are recovered too
  bool recorded = false;
  for (const auto& e : records_of("admin.execute")) {
    if (e.extra.at("admin_request").as_string() != bad.id) continue;
    recorded = true;
    EXPECT_EQ(e.result, "internal");
    EXPECT_TRUE(e.extra.at("recovered").as_bool());
    EXPECT_NE(std::string(e.extra.at("message").as_string()).find("the executor exploded"), std::string::npos);
  }
  EXPECT_TRUE(recorded) << "the failure must be audited";
  requests_ = make();  // and the next start has nothing left to do
  EXPECT_TRUE(requests_->recover(daemon_)->empty());
}

TEST_F(DualControl, ApprovalsAndTheExecutionAreRecordedBeforeTheyAreStored) {
  auto r = *requests_->propose("create-key", kParams, caller_);
  // Each record, at the moment it is written, describes something the store does not hold yet:
  // a crash right after the store's commit can no longer lose it.
  std::vector<std::string> seen;
  on_record_ = [&](const AuditEvent& e) {
    const auto now = stored(r.id);
    seen.push_back(e.type + " " + e.operator_name.value_or("") + " stored:" + std::to_string(now.approvals.size()) + " " +
                   now.state);
  };
  ASSERT_EQ(approve(r, "alice")->state, "pending");
  ASSERT_EQ(approve(r, "bob")->state, "executed");
  EXPECT_EQ(seen, (std::vector<std::string>{"admin.approve alice stored:0 pending", "admin.approve bob stored:1 pending",
                                            "admin.execute  stored:2 executing"}));
  for (const auto& e : records_) {
    EXPECT_EQ(e.request_id, "req-1");
    EXPECT_EQ(e.client.uid, 1000u);
    EXPECT_EQ(e.operation, "create-key");
    EXPECT_EQ(e.key, "k");
    EXPECT_EQ(e.extra.at("admin_request").as_string(), r.id);
    EXPECT_FALSE(e.extra.contains("recovered"));
  }
  auto exec = records_of("admin.execute");
  ASSERT_EQ(exec.size(), 1u);
  EXPECT_EQ(exec[0].result, "ok");
  EXPECT_EQ(exec[0].extra.at("approved_by"), boost::json::value(boost::json::array{"alice", "bob"}));

  // A failed operation is recorded with its error.
  auto d = *requests_->propose("disable-key", kParams, caller_);
  on_record_ = nullptr;
  ASSERT_TRUE(approve(d, "alice"));
  ASSERT_EQ(approve(d, "bob")->state, "failed");
  EXPECT_EQ(records_of("admin.execute").back().result, "failed_precondition");
}

TEST_F(DualControl, AnApprovalThatCannotBeAuditedIsNotStored) {
  auto r = *requests_->propose("create-key", kParams, caller_);
  ASSERT_TRUE(approve(r, "alice"));
  audit_writable_ = false;
  auto refused = approve(r, "bob");
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, Code::unavailable);
  EXPECT_EQ(stored(r.id).approvals.size(), 1u);
  EXPECT_EQ(requests_->get(r.id)->state, "pending");
  EXPECT_EQ(executed_[r.id], 0);
  audit_writable_ = true;
  EXPECT_EQ(approve(r, "bob")->state, "executed");
  EXPECT_EQ(executed_[r.id], 1);
}

TEST_F(DualControl, AnExecutionThatCannotBeAuditedStaysExecutingAndIsRecordedAtTheNextStart) {
  auto r = *requests_->propose("create-key", kParams, caller_);
  ASSERT_TRUE(approve(r, "alice"));
  // The final approval is recorded; then the log fails, before the execution's record.
  on_record_ = [&](const AuditEvent&) { audit_writable_ = false; };
  auto done = approve(r, "bob");
  ASSERT_FALSE(done);
  EXPECT_EQ(done.error().code, Code::unavailable);
  EXPECT_EQ(stored(r.id).state, "executing");
  EXPECT_EQ(executed_[r.id], 1);
  EXPECT_TRUE(records_of("admin.execute").empty());
  // What the real executor commits with its change: the request marked applied.
  Key k;
  k.name = "k";
  ASSERT_TRUE(store_->insert_key(k, 0, r.id));
  audit_writable_ = true;
  on_record_ = nullptr;
  requests_ = make();  // a restart
  records_.clear();
  ASSERT_TRUE(requests_->recover(daemon_));
  EXPECT_EQ(executed_[r.id], 1);  // not run again
  auto exec = records_of("admin.execute");
  ASSERT_EQ(exec.size(), 1u);
  EXPECT_TRUE(exec[0].extra.at("recovered").as_bool());
  EXPECT_EQ(stored(r.id).state, "executed");
}

TEST_F(DualControl, ProposalsAndCancelsAreRecordedBeforeTheyAreStored) {
  // Each record, at the moment it is written, describes something the store does not hold yet.
  std::vector<std::string> seen;
  on_record_ = [&](const AuditEvent& e) {
    seen.push_back(e.type + " stored:" + stored_state(std::string(e.extra.at("admin_request").as_string())));
  };
  auto r = requests_->propose("create-key", kParams, caller_);
  ASSERT_TRUE(r);
  auto cancelled = requests_->cancel(r->id, caller_);
  ASSERT_TRUE(cancelled);
  EXPECT_EQ(cancelled->state, "cancelled");
  EXPECT_EQ(seen, (std::vector<std::string>{"admin.propose stored:none", "admin.cancel stored:pending"}));
  EXPECT_EQ(stored_state(r->id), "cancelled");
  ASSERT_EQ(records_.size(), 2u);
  for (const auto& e : records_) {
    EXPECT_EQ(e.request_id, "req-1");
    EXPECT_EQ(e.client.uid, 1000u);
    EXPECT_EQ(e.result, "ok");
    EXPECT_EQ(e.operation, "create-key");
    EXPECT_EQ(e.key, "k");
    EXPECT_EQ(e.extra.at("admin_request").as_string(), r->id);
  }
  EXPECT_EQ(records_[0].extra.at("state").as_string(), "pending");
  EXPECT_EQ(records_[1].extra.at("state").as_string(), "cancelled");

  // Refusals write nothing here: they are the caller's to audit.
  records_.clear();
  EXPECT_EQ(requests_->cancel(r->id, caller_).error().code, Code::failed_precondition);
  EXPECT_EQ(requests_->cancel("no-such-id", caller_).error().code, Code::not_found);
  EXPECT_TRUE(records_.empty());
}

TEST_F(DualControl, AProposalThatCannotBeAuditedIsNotStored) {
  audit_writable_ = false;
  auto refused = requests_->propose("create-key", kParams, caller_);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, Code::unavailable);  // 503
  EXPECT_EQ(http_status(refused.error().code), 503);
  EXPECT_TRUE(store_->load_requests()->empty());
  EXPECT_TRUE(requests_->list().empty());
  audit_writable_ = true;
  ASSERT_TRUE(requests_->propose("create-key", kParams, caller_));
  EXPECT_EQ(store_->load_requests()->size(), 1u);
}

TEST_F(DualControl, ACancelThatCannotBeAuditedIsNotStored) {
  auto r = *requests_->propose("create-key", kParams, caller_);
  audit_writable_ = false;
  auto refused = requests_->cancel(r.id, caller_);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, Code::unavailable);
  EXPECT_EQ(http_status(refused.error().code), 503);
  EXPECT_EQ(stored_state(r.id), "pending");
  EXPECT_EQ(requests_->get(r.id)->state, "pending");
  audit_writable_ = true;
  EXPECT_EQ(approve(r, "alice")->state, "pending");  // still open
  EXPECT_EQ(requests_->cancel(r.id, caller_)->state, "cancelled");
}

// A record written and then a commit that fails: the failure names the request, which does not
// exist (a proposal) or is unchanged (a cancel), so the record describes nothing that took.
TEST_F(DualControl, ARecordedProposalOrCancelTheStoreRefusesIsNotAcknowledged) {
  sql("CREATE TRIGGER no_insert BEFORE INSERT ON admin_requests BEGIN SELECT RAISE(ABORT, 'injected'); END;");
  auto refused = requests_->propose("create-key", kParams, caller_);
  ASSERT_FALSE(refused);
  ASSERT_EQ(records_.size(), 1u);
  const std::string id(records_[0].extra.at("admin_request").as_string());
  EXPECT_NE(refused.error().message.find(id), std::string::npos) << refused.error().message;
  EXPECT_EQ(requests_->get(id).error().code, Code::not_found);
  EXPECT_EQ(stored_state(id), "none");
  sql("DROP TRIGGER no_insert;");

  auto r = *requests_->propose("create-key", kParams, caller_);
  sql("CREATE TRIGGER no_cancel BEFORE UPDATE ON admin_requests WHEN NEW.state = 'cancelled'"
      " BEGIN SELECT RAISE(ABORT, 'injected'); END;");
  records_.clear();
  auto not_cancelled = requests_->cancel(r.id, caller_);
  ASSERT_FALSE(not_cancelled);
  EXPECT_NE(not_cancelled.error().message.find(r.id), std::string::npos);
  EXPECT_EQ(records_of("admin.cancel").size(), 1u);
  EXPECT_EQ(stored_state(r.id), "pending");
  EXPECT_EQ(requests_->get(r.id)->state, "pending");
  sql("DROP TRIGGER no_cancel;");
  EXPECT_EQ(requests_->cancel(r.id, caller_)->state, "cancelled");
}

TEST(Operators, RefuseWeakOrForeignKeys) {
  test::TempDir dir;
  EVP_PKEY* small = EVP_RSA_gen(1024);
  const std::string pem = public_key_pem(small).value();
  EVP_PKEY_free(small);
  auto r = OperatorSet::from_pem({{"weak", pem}});
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().find("2048"), std::string::npos);
  EXPECT_FALSE(OperatorSet::from_pem({{"junk", "not a key"}}));
  EVP_PKEY* p384 = EVP_EC_gen("P-384");
  const std::string p384_pem = public_key_pem(p384).value();
  EVP_PKEY_free(p384);
  EXPECT_FALSE(OperatorSet::from_pem({{"a", p384_pem}}));
  std::string p256 = make_key(dir.path() + "/p256.pem", false);
  EXPECT_TRUE(OperatorSet::from_pem({{"a", p256}}));
  EXPECT_FALSE(OperatorSet::from_pem({{"a", p256}, {"b", p256}}));  // one key, two names
}
