// Fail closed, walked: every admin operation (the list in common/admin_operations.h), scheduled
// destruction, BYOK import and the data plane (wrap, unwrap, datakey, rewrap, derive, batch) run
// once per failure point N = 1, 2, ... of the state store's writes and of its syncs (the Nth
// write or sync of state.db or its WAL fails, as a full disk or a failing fsync would), until the
// operation meets no fault. After each run the instance is stopped and started again from its
// files (store, audit log, the same SoftHSMv2 token), as custodyd's start-up does, and the walk
// checks:
//  (a) a caller told "done" finds it done after the restart;
//  (b) nothing in the store without its audit record: every stored request has its proposal,
//      approvals and execution on record, every key its creation or import, every destroyed key
//      its destruction, and a change the caller was not told about is on record as ok;
//  (c) what was acknowledged before (keys, blobs, usage counts) is still there, and the token
//      still holds an object for every live key version and none for a destroyed one.
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <future>
#include <iostream>
#include <map>
#include <set>
#include <sstream>

#include "cli/approval_signer.h"
#include "common/admin_operations.h"
#include "common/base64.h"
#include "common/byok_payload.h"
#include "common/openssl_ptr.h"
#include "common/pem.h"
#include "daemon/core/admin/admin_requests.h"
#include "daemon/core/audit/audit_log.h"
#include "daemon/core/import/import_jobs.h"
#include "daemon/core/import/token_importer.h"
#include "daemon/core/keys/data_plane.h"
#include "daemon/core/keys/key_admin.h"
#include "daemon/core/keys/key_json.h"
#include "daemon/core/keys/lifecycle_scheduler.h"
#include "daemon/core/keys/token_key_vault.h"
#include "daemon/core/keys/usage_meter.h"
#include "daemon/service/admin_operations.h"
#include "daemon/service/routes.h"
#include "daemon/service/service.h"
#include "tests/support/fake_clock.h"
#include "tests/support/softhsm_token.h"
#include "tests/support/sqlite_fault_vfs.h"

using namespace custody;
using namespace std::chrono_literals;
namespace json = boost::json;
using FaultOp = test::SqliteFaultVfs::Op;

namespace {

constexpr std::int64_t kMinDestructionWait = 60;
constexpr int kMaxFailurePoints = 60;
// SoftHSMv2 2.6 offers the SHA-1 variants of the RSA methods only.
const std::string kImportMethod = "rsa-oaep-3072-sha1-aes-256";
const std::string kImportHash = "sha1";

std::string policy_for(unsigned uid) {
  return "[{\"uid\":" + std::to_string(uid) + ",\"operations\":[\"wrap\",\"unwrap\",\"datakey\",\"rewrap\",\"derive\"]}]";
}

// A directory in memory (/dev/shm where there is one): the walk syncs the store and the audit log
// hundreds of times, and the faults are counted in SQLite's VFS whatever the file system does.
class ScratchDir {
 public:
  ScratchDir() {
    std::error_code ec;
    const auto base = std::filesystem::is_directory("/dev/shm", ec) ? std::filesystem::path("/dev/shm")
                                                                    : std::filesystem::temp_directory_path();
    std::string tmpl = (base / "custody-walk-XXXXXX").string();
    if (!::mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
    path_ = tmpl;
  }
  ~ScratchDir() {
    std::error_code ignored;  // a leftover scratch directory is no reason to fail a test
    std::filesystem::remove_all(path_, ignored);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// One custodyd, composed in-process the way daemon/main.cpp composes it, from the files in dir.
// Construction is start-up (load, recover, destroy orphaned import pairs); destruction is a stop.
class Instance {
 public:
  Instance(const std::string& dir, const core::Clock& clock, const std::vector<std::pair<std::string, std::string>>& operators)
      : pool_(test::SharedToken::get().pool()), vault_(pool_), importer_(pool_) {
    auto store = core::StateStore::open(dir + "/state.db");
    if (!store) throw std::runtime_error("state store: " + store.error());
    store_ = std::move(*store);
    auto keys = store_->load_keys();
    if (!keys) throw std::runtime_error("load keys: " + keys.error().message);
    for (auto& k : *keys) registry_.put(std::move(k));
    auto audit = core::AuditLog::open(dir + "/audit.jsonl", core::AuditDurability::group, clock);
    if (!audit) throw std::runtime_error("audit: " + audit.error());
    audit_ = std::move(*audit);
    key_admin_ = std::make_unique<core::KeyAdmin>(registry_, *store_, vault_, clock,
                                                  core::LifecycleSettings{kMinDestructionWait});
    auto recovered = key_admin_->recover();
    if (!recovered) throw std::runtime_error("key recovery: " + recovered.error().message);
    for (const auto& what : *recovered) record_recovery(what);
    meter_ = std::make_unique<core::UsageMeter>(*store_);
    data_plane_ = std::make_unique<core::DataPlane>(registry_, vault_, meter_.get());
    context_ = std::make_unique<service::ServiceContext>(service::ServiceContext{
        registry_, vault_, *data_plane_, *key_admin_, *audit_, metrics_, {}, 16, nullptr, nullptr, nullptr, health_,
        meter_.get(), core::kDefaultUsageLimit});
    auto instance_id = store_->meta("instance_id", "fault-walk");
    if (!instance_id) throw std::runtime_error("meta: " + instance_id.error().message);
    auto ops = core::OperatorSet::from_pem(operators);
    if (!ops) throw std::runtime_error("operators: " + ops.error());
    auto& context = *context_;
    const core::LifecycleSettings lifecycle{kMinDestructionWait};
    requests_ = std::make_unique<core::AdminRequests>(
        *store_, std::move(*ops), core::QuorumPolicy{}, clock, *instance_id, std::chrono::seconds(86400),
        [&context, lifecycle](const std::string& op, const json::object& params) {
          return service::validate_admin_operation(context, lifecycle, op, params);
        },
        [&context](const std::string& op, const json::object& params, const std::string& id) {
          return service::run_admin_operation(context, op, params, id);
        },
        [&context](const std::string& op, const json::object& params) {
          return service::admin_operation_result(context, op, params);
        },
        [this](std::vector<core::AuditEvent> events) { return audit_->write(std::move(events)); });
    context_->requests = requests_.get();
    jobs_ = std::make_unique<core::ImportJobs>(*store_, importer_, registry_, *key_admin_, clock);
    if (auto ok = jobs_->load(); !ok) throw std::runtime_error("jobs: " + ok.error().message);
    auto labelled = importer_.find_labelled_pairs(core::kImportLabelPrefix);
    if (!labelled) throw std::runtime_error("import pairs: " + labelled.error().message);
    for (const auto& orphan : jobs_->orphaned_wrapping_keys(*labelled)) {
      if (auto d = importer_.destroy_wrapping_pair(orphan); !d)
        throw std::runtime_error("orphaned import pair " + orphan.label + ": " + d.error().message);
      record_recovery("import-job key pair " + orphan.label + " belongs to no active job: destroyed");
    }
    context_->jobs = jobs_.get();
    if (auto ok = requests_->load(); !ok) throw std::runtime_error("requests: " + ok.error().message);
    auto finished = requests_->recover(core::AdminCaller{"-", core::Peer{::getuid(), ::getgid(), ::getpid()}});
    if (!finished) throw std::runtime_error("request recovery: " + finished.error().message);
    for (const auto& what : *finished) record_recovery(what);
    scheduler_ = std::make_unique<core::LifecycleScheduler>(*key_admin_, registry_, *meter_, *audit_, clock, 1h);
    scheduler_->add_task([this] {
      for (const auto& id : jobs_->expire_due()) {
        core::AuditEvent e = daemon_event("lifecycle.import-job-expired");
        e.extra["import_job"] = id;
        audit_->write({e});
      }
    });
    // Destructions and job expiries that fell due while it was down run before it serves.
    scheduler_->run_once();
    service_ = std::make_unique<service::Service>(service::service_routes(*context_), *context_);
    admin_ = std::make_unique<service::Service>(service::admin_routes(*context_), *context_);
  }
  ~Instance() { audit_->stop(); }

  struct Reply {
    int status = 0;
    json::value body;
  };
  Reply call(bool admin, const std::string& method, const std::string& target, const json::value& body = nullptr) {
    service::Request r;
    r.method = method;
    r.target = target;
    if (!body.is_null()) r.body = json::serialize(body);
    r.peer = core::Peer{::getuid(), ::getgid(), ::getpid()};
    r.request_id = "walk-" + std::to_string(++calls_);
    std::promise<service::Response> answer;
    (admin ? admin_ : service_)->handle(r, [&](service::Response response) { answer.set_value(std::move(response)); });
    auto response = answer.get_future().get();
    Reply out{response.status, nullptr};
    if (response.body.size()) out.body = json::parse(std::string_view(response.body.data(), response.body.size()));
    return out;
  }

  core::StateStore& store() { return *store_; }
  core::KeyRegistry& registry() { return registry_; }
  core::KeyAdmin& key_admin() { return *key_admin_; }
  core::ImportJobs& jobs() { return *jobs_; }
  core::TokenImporter& importer() { return importer_; }
  core::TokenKeyVault& vault() { return vault_; }
  core::LifecycleScheduler& scheduler() { return *scheduler_; }
  core::AdminRequests& requests() { return *requests_; }

 private:
  core::AuditEvent daemon_event(const char* type) {
    core::AuditEvent e;
    e.type = type;
    e.request_id = "-";
    e.client = core::Peer{::getuid(), ::getgid(), ::getpid()};
    return e;
  }
  void record_recovery(const std::string& what) {
    auto e = daemon_event("daemon.recovery");
    e.extra["action"] = what;
    if (!audit_->write({e})) throw std::runtime_error("cannot audit recovery: " + what);
  }

  p11::SessionPool& pool_;
  std::unique_ptr<core::StateStore> store_;
  core::KeyRegistry registry_;
  core::TokenKeyVault vault_;
  std::unique_ptr<core::AuditLog> audit_;
  std::unique_ptr<core::KeyAdmin> key_admin_;
  std::unique_ptr<core::UsageMeter> meter_;
  std::unique_ptr<core::DataPlane> data_plane_;
  service::Metrics metrics_;
  service::HealthState health_;
  std::unique_ptr<service::ServiceContext> context_;
  std::unique_ptr<core::AdminRequests> requests_;
  core::TokenImporter importer_;
  std::unique_ptr<core::ImportJobs> jobs_;
  std::unique_ptr<core::LifecycleScheduler> scheduler_;
  std::unique_ptr<service::Service> service_;
  std::unique_ptr<service::Service> admin_;
  int calls_ = 0;
};

// A blob the caller was told was made, and what it must unwrap to.
struct AcknowledgedBlob {
  std::string key, ciphertext, plaintext;
};

// One row of the walk: prepare runs unfaulted, act runs with the fault armed and says whether
// the caller was told the operation succeeded, effect says (after the restart) whether it took.
struct Row {
  std::string name;
  std::function<void()> setup;  // once per walk, on a fresh instance (null: nothing)
  std::function<void(int n)> prepare;
  std::function<bool()> act;
  std::function<bool()> effect;  // null: the row checks nothing beyond the generic checks
};

class FaultWalk : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const char* name : {"alice", "bob"}) operators_.emplace_back(name, make_operator_key(name));
    start();
  }
  void TearDown() override {
    live_.reset();
    std::cout << "failure points walked (write faults / sync faults):\n";
    for (const auto& [row, counts] : table_)
      std::cout << "  " << row << ": " << counts.first << " / " << counts.second << " ("
                << std::chrono::duration_cast<std::chrono::milliseconds>(elapsed_[row]).count() << " ms)\n";
  }

  std::string make_operator_key(const std::string& name) {
    auto key = ossl::PKey(EVP_EC_gen("P-256"));
    EXPECT_TRUE(key);
    const std::string path = dir_.path() + "/" + name + ".pem";
    FILE* f = std::fopen(path.c_str(), "w");
    EXPECT_TRUE(f);
    EXPECT_EQ(PEM_write_PrivateKey(f, key.get(), nullptr, nullptr, 0, nullptr, nullptr), 1);
    EXPECT_EQ(std::fclose(f), 0);
    auto pem = public_key_pem(key.get());
    EXPECT_TRUE(pem) << (pem ? "" : pem.error());
    return pem ? *pem : "";
  }

  void start() { live_ = std::make_unique<Instance>(run_dir_->path(), clock_, operators_); }
  // Each walk starts on an empty store and audit log of its own, so that checking after each
  // run costs the same whatever ran before.
  void fresh_instance() {
    live_.reset();
    run_dir_ = std::make_unique<ScratchDir>();
    acknowledged_requests_.clear();
    acknowledged_approvals_.clear();
    sealed_.clear();
    encryptions_.clear();
    start();
  }
  void restart() {
    live_.reset();
    start();
  }
  Instance& live() { return *live_; }

  // Proposes and approves an operation through the admin API; true only when the caller was
  // told it executed. Each acknowledged step is remembered for (c).
  bool admin_operation(const std::string& operation, const json::object& params, json::object* result = nullptr) {
    auto proposed = live().call(true, "POST", "/v1/admin/requests", json::object{{"operation", operation}, {"params", params}});
    if (proposed.status != 201) return refused(proposed);
    const std::string id(proposed.body.at("request").at("id").as_string());
    acknowledged_requests_[id] = "pending";
    const std::string challenge = [&] {
      auto bytes = base64_decode(std::string(proposed.body.at("challenge").as_string()));
      return std::string(bytes->begin(), bytes->end());
    }();
    for (const auto& [name, pem] : operators_) {
      auto signature = client::sign_with_key_file(dir_.path() + "/" + name + ".pem", challenge);
      EXPECT_TRUE(signature);
      auto approved = live().call(true, "POST", "/v1/admin/requests/" + id + "/approvals",
                                  json::object{{"operator", name}, {"signature", base64_encode(*signature)}});
      if (approved.status != 200) return refused(approved);
      const std::string state(approved.body.at("request").at("state").as_string());
      if (state == "executed") {
        acknowledged_requests_[id] = "executed";
        if (result) *result = approved.body.at("request").at("result").as_object();
        return true;
      }
      if (state != "pending") return refused(approved);
      ++acknowledged_approvals_[id];
    }
    return false;
  }
  bool refused(const Instance::Reply& reply) {
    last_refusal_ = std::to_string(reply.status) + " " + json::serialize(reply.body);
    return false;
  }
  void must(const std::string& operation, const json::object& params, json::object* result = nullptr) {
    ASSERT_TRUE(admin_operation(operation, params, result)) << operation << " " << json::serialize(params) << ": " << last_refusal_;
  }
  void create_key(const std::string& name, const std::string& algorithm = "aes-256-gcm") {
    must("create-key", {{"name", name}, {"algorithm", algorithm}, {"policy", json::parse(policy_for(::getuid()))}});
  }

  bool wrap(const std::string& key, AcknowledgedBlob* out = nullptr) {
    Bytes plaintext(24);
    EXPECT_EQ(RAND_bytes(plaintext.data(), static_cast<int>(plaintext.size())), 1);
    auto r = live().call(false, "POST", "/v1/keys/" + key + "/wrap", json::object{{"plaintext", base64_encode(plaintext)}});
    if (r.status != 200) return false;
    AcknowledgedBlob s{key, std::string(r.body.at("ciphertext").as_string()), base64_encode(plaintext)};
    acknowledge(s);
    if (out) *out = s;
    return true;
  }
  void acknowledge(const AcknowledgedBlob& s) {
    sealed_.push_back(s);
    ++encryptions_[s.key];
  }

  // The whole row, once per write fault and once per sync fault.
  void walk(const Row& row) {
    for (FaultOp op : {FaultOp::write, FaultOp::sync}) {
      SCOPED_TRACE(row.name + (op == FaultOp::write ? " / write fault " : " / sync fault "));
      int points = 0;
      const auto walk_started = std::chrono::steady_clock::now();
      fresh_instance();
      if (row.setup) row.setup();
      if (HasFatalFailure()) return;
      for (int n = 1;; ++n) {
        SCOPED_TRACE("N = " + std::to_string(n));
        ASSERT_LE(n, kMaxFailurePoints) << "the operation never ran without meeting a fault";
        row.prepare(n);
        if (HasFatalFailure()) return;
        snapshot();
        vfs_.fail(op, n, "state.db");
        const bool acknowledged = row.act();
        const bool hit = vfs_.failed() > 0;
        vfs_.heal();
        ASSERT_NO_THROW(restart()) << "the instance does not start again after the fault";
        if (row.effect) {
          const bool took = row.effect();
          if (acknowledged) {
            EXPECT_TRUE(took) << "(a) the caller was told it succeeded, but after a restart it is not done";
          }
        }
        check_audit_covers_store();
        check_acknowledged_still_there();
        if (HasFatalFailure()) return;
        if (!hit) {
          EXPECT_TRUE(acknowledged) << "no fault was hit, yet the operation was not acknowledged: " << last_refusal_;
          break;
        }
        ++points;
      }
      (op == FaultOp::write ? table_[row.name].first : table_[row.name].second) = points;
      elapsed_[row.name] += std::chrono::steady_clock::now() - walk_started;
    }
  }

  // The keys as they were before the faulted run; (c) compares the keys the row leaves alone.
  void snapshot() {
    before_.clear();
    for (const auto& k : live().registry().all()) before_[k->name] = json::serialize(core::key_to_json(*k));
  }

  std::vector<json::object> audit_records() {
    std::vector<json::object> out;
    std::istringstream in(test::read_file(run_dir_->path() + "/audit.jsonl"));
    for (std::string line; std::getline(in, line);) out.push_back(json::parse(line).as_object());
    return out;
  }
  static std::string str(const json::object& o, const char* field) {
    const auto* v = o.if_contains(field);
    return v && v->is_string() ? std::string(v->as_string()) : std::string();
  }

  // (b): every fact in the store has its audit record.
  void check_audit_covers_store() {
    const auto records = audit_records();
    auto on_record = [&](const std::function<bool(const json::object&)>& match) {
      for (const auto& r : records)
        if (match(r)) return true;
      return false;
    };
    auto stored = live().store().load_requests();
    ASSERT_TRUE(stored) << stored.error().message;
    for (const auto& req : *stored) {
      auto of = [&](const json::object& r, const char* type) {
        const auto* x = r.if_contains("admin_request");
        return str(r, "type") == type && x && x->is_string() && x->as_string() == req.id;
      };
      EXPECT_TRUE(on_record([&](const auto& r) { return of(r, "admin.propose") && str(r, "result") == "ok"; }))
          << "(b) request " << req.id << " (" << req.operation << ") is stored without its admin.propose record";
      for (const auto& a : req.approvals)
        EXPECT_TRUE(on_record([&](const auto& r) {
          return of(r, "admin.approve") && str(r, "result") == "ok" && str(r, "operator") == a.operator_name;
        })) << "(b) the approval of "
            << a.operator_name << " of request " << req.id << " is stored without its record";
      if (req.state == "executed" || req.state == "failed") {
        const std::string want = req.state == "executed" ? "ok" : "";
        EXPECT_TRUE(on_record([&](const auto& r) {
          return of(r, "admin.execute") && (want.empty() ? str(r, "result") != "ok" : str(r, "result") == "ok");
        })) << "(b) request "
            << req.id << " (" << req.operation << ") is " << req.state << " without a matching admin.execute record";
      }
      auto applied = live().store().applied(req.id);
      ASSERT_TRUE(applied) << applied.error().message;
      if (*applied) {
        EXPECT_EQ(req.state, "executed") << "(b) request " << req.id << " (" << req.operation
                                         << ") changed the keys but is not recorded as executed";
      }
    }
    for (const auto& k : live().registry().all()) {
      EXPECT_TRUE(on_record([&](const auto& r) {
        return str(r, "key") == k->name && str(r, "result") == "ok" &&
               ((str(r, "type") == "admin.execute" && str(r, "operation") == "create-key") || str(r, "type") == "admin.import");
      })) << "(b) key "
          << k->name << " exists without the record of its creation or import";
      if (k->state == core::KeyState::destroyed) {
        EXPECT_TRUE(on_record([&](const auto& r) {
          return (str(r, "type") == "lifecycle.destroy" && str(r, "key") == k->name && str(r, "result") == "ok") ||
                 (str(r, "type") == "daemon.recovery" && str(r, "action").find("'" + k->name + "'") != std::string::npos);
        })) << "(b) key "
            << k->name << " is destroyed without the record of its destruction";
      }
    }
    // Every import that stored a new key version was audited as ok.
    auto jobs = live().store().load_jobs();
    ASSERT_TRUE(jobs) << jobs.error().message;
    for (const auto& job : *jobs) {
      if (job.state != "used") continue;
      EXPECT_TRUE(on_record([&](const auto& r) {
        const auto* x = r.if_contains("import_job");
        return str(r, "type") == "admin.import" && str(r, "result") == "ok" && x && x->is_string() && x->as_string() == job.id;
      })) << "(b) import job "
          << job.id << " is used without an ok admin.import record";
    }
  }

  // (c): what callers were told is still so, and state and token agree.
  void check_acknowledged_still_there() {
    for (const auto& [id, state] : acknowledged_requests_) {
      auto r = live().requests().get(id);
      ASSERT_TRUE(r) << "(c) acknowledged request " << id << " is gone: " << r.error().message;
      if (state == "executed") {
        EXPECT_EQ(r->state, "executed") << "(c) request " << id;
      }
      auto approvals = acknowledged_approvals_.find(id);
      if (approvals != acknowledged_approvals_.end()) {
        EXPECT_GE(static_cast<int>(r->approvals.size()), approvals->second) << "(c) request " << id << " lost an approval";
      }
    }
    for (const auto& [name, before] : before_) {
      auto k = live().registry().find(name);
      ASSERT_TRUE(k) << "(c) key " << name << " is gone";
      if (!subjects_.count(name)) {
        EXPECT_EQ(json::serialize(core::key_to_json(*k)), before) << "(c) key " << name << " changed";
      }
    }
    // A sample of acknowledged blobs (the newest of each key) still unwraps, and no version used
    // for an acknowledged encryption has a durable count below the acknowledged ones.
    std::map<std::string, const AcknowledgedBlob*> newest;
    for (const auto& s : sealed_) newest[s.key] = &s;
    for (const auto& [key, s] : newest) {
      auto k = live().registry().find(key);
      if (!k || k->state != core::KeyState::enabled) continue;
      auto r = live().call(false, "POST", "/v1/keys/" + key + "/unwrap", json::object{{"ciphertext", s->ciphertext}});
      ASSERT_EQ(r.status, 200) << "(c) an acknowledged blob of " << key << " no longer unwraps: " << json::serialize(r.body);
      EXPECT_EQ(r.body.at("plaintext").as_string(), s->plaintext);
      std::uint64_t durable = 0;
      for (const auto& v : k->versions) {
        auto count = live().store().encryptions(key, v.version);
        ASSERT_TRUE(count) << count.error().message;
        durable += *count;
      }
      EXPECT_GE(durable, encryptions_[key]) << "(c) the durable usage count of " << key << " is below what was acknowledged";
    }
    auto report = live().key_admin().reconcile();
    ASSERT_TRUE(report) << report.error().message;
    for (const auto& m : report->missing) ADD_FAILURE() << "(c) token object missing: " << m;
    for (const auto& a : report->altered) ADD_FAILURE() << "(c) token object altered: " << a;
    for (const auto& u : report->undestroyed) ADD_FAILURE() << "(c) destroyed version still in the token: " << u;
    // The pairs of jobs that are no longer active are gone from the token.
    auto pairs = live().importer().find_labelled_pairs(core::kImportLabelPrefix);
    ASSERT_TRUE(pairs) << pairs.error().message;
    for (const auto& job : live().jobs().list())
      for (const auto& p : *pairs)
        if (job.state != "active" && !job.wrapping.label.empty() && p.label == job.wrapping.label)
          ADD_FAILURE() << "(c) import job " << job.id << " is " << job.state << " but its key pair is still in the token";
  }

  std::shared_ptr<const core::Key> key(const std::string& name) { return live().registry().find(name); }

  // A row for an operation on a key made (unfaulted) for each run, with setup for its preconditions.
  Row key_row(const std::string& operation, std::function<void(const std::string&)> setup,
              std::function<json::object(const std::string&)> params, std::function<bool(const core::Key&)> took) {
    auto name = std::make_shared<std::string>();
    return Row{operation, nullptr,
               [=, this](int n) {
                 *name = operation.substr(0, 12) + "-" + std::to_string(n) + "-" + std::to_string(++serial_);
                 subjects_ = {*name};
                 if (operation != "create-key") create_key(*name);
                 if (setup) setup(*name);
               },
               [=, this] { return admin_operation(operation, params(*name)); },
               [=, this] {
                 auto k = key(*name);
                 if (!k) return false;
                 const bool done = took(*k);
                 if (!done && operation != "create-key") {
                   EXPECT_EQ(json::serialize(core::key_to_json(*k)), before_[*name])
                       << "(a) the operation was not done, but the key changed";
                 }
                 return done;
               }};
  }

  test::TempDir dir_;  // the operators' keys
  std::unique_ptr<ScratchDir> run_dir_ = std::make_unique<ScratchDir>();  // state.db, audit.jsonl
  test::FakeClock clock_;
  test::SqliteFaultVfs vfs_;  // outlives every instance: their stores open through it
  std::vector<std::pair<std::string, std::string>> operators_;
  std::unique_ptr<Instance> live_;
  std::map<std::string, std::string> acknowledged_requests_;  // id → "pending" | "executed"
  std::map<std::string, int> acknowledged_approvals_;
  std::vector<AcknowledgedBlob> sealed_;
  std::map<std::string, std::uint64_t> encryptions_;  // acknowledged, per key
  std::map<std::string, std::string> before_;         // key → key_to_json before the faulted run
  std::set<std::string> subjects_;                    // the keys the row may change
  std::map<std::string, std::pair<int, int>> table_;  // row → failure points met (write, sync)
  std::map<std::string, std::chrono::steady_clock::duration> elapsed_;
  int serial_ = 0;
  std::string last_refusal_;
};

json::object named(const std::string& name) { return {{"name", name}}; }

}  // namespace

TEST_F(FaultWalk, EveryAdminOperationFailsClosedAtEveryStoreWriteAndSync) {
  const std::string other_policy = "[{\"uid\":4242,\"operations\":[\"wrap\"]}]";
  const json::object long_wait{{"wait_seconds", 30 * 86400}};
  std::vector<Row> rows = {
      key_row("create-key", nullptr,
              [](const std::string& n) {
                return json::object{{"name", n}, {"algorithm", "aes-256-gcm"}, {"policy", json::parse(policy_for(::getuid()))}};
              },
              [](const core::Key& k) { return k.current_version == 1; }),
      key_row("rotate-key", nullptr, named, [](const core::Key& k) { return k.current_version == 2; }),
      key_row("disable-key", nullptr, named, [](const core::Key& k) { return k.state == core::KeyState::disabled; }),
      key_row("enable-key", [this](const std::string& n) { must("disable-key", named(n)); }, named,
              [](const core::Key& k) { return k.state == core::KeyState::enabled; }),
      key_row("schedule-destruction", nullptr,
              [](const std::string& n) { return json::object{{"name", n}, {"wait_seconds", 30 * 86400}}; },
              [](const core::Key& k) { return k.state == core::KeyState::pending_destruction; }),
      key_row("cancel-destruction",
              [this](const std::string& n) { must("schedule-destruction", {{"name", n}, {"wait_seconds", 30 * 86400}}); },
              named, [](const core::Key& k) { return k.state != core::KeyState::pending_destruction; }),
      key_row("set-policy", nullptr,
              [other_policy](const std::string& n) { return json::object{{"name", n}, {"policy", json::parse(other_policy)}}; },
              [](const core::Key& k) { return k.policy.rules.size() == 1 && k.policy.rules[0].uid == 4242u; }),
      key_row("set-min-decrypt-version", [this](const std::string& n) { must("rotate-key", named(n)); },
              [](const std::string& n) { return json::object{{"name", n}, {"version", 2}}; },
              [](const core::Key& k) { return k.min_decrypt_version == 2; }),
  };
  // create-import-job: an RSA pair in the token per run; the job must exist when acknowledged and
  // its pair must not outlive it.
  auto job_key = std::make_shared<std::string>();
  rows.push_back(Row{"create-import-job", nullptr,
                     [this, job_key](int n) {
                       *job_key = "job-" + std::to_string(n) + "-" + std::to_string(++serial_);
                       subjects_.clear();
                     },
                     [this, job_key] {
                       return admin_operation("create-import-job",
                                              {{"key_name", *job_key}, {"algorithm", "aes-256-gcm"}, {"method", kImportMethod}});
                     },
                     [this, job_key] {
                       for (const auto& j : live().jobs().list())
                         if (j.key_name == *job_key) return j.state == "active";
                       return false;
                     }});
  std::set<std::string> covered;
  for (const auto& row : rows) covered.insert(row.name);
  // Not walked yet: the recovery operations need a trusted recovery key that only the token's SO
  // can import (issue #13 lists this as open). Every other operation must have its row.
  const std::set<std::string> not_walked_yet = {"export-recovery-bundle", "import-recovery-bundle"};
  for (auto op : kAdminOperations)
    EXPECT_TRUE(covered.count(std::string(op)) || not_walked_yet.count(std::string(op)))
        << "no walk for admin operation " << op;
  for (const auto& row : rows) {
    walk(row);
    if (HasFatalFailure()) return;
  }
}

TEST_F(FaultWalk, ScheduledDestructionAndBYOKImportFailClosedAtEveryStoreWriteAndSync) {
  // Destruction: the scheduler's pass over two keys that fell due together (a fault can then
  // land after the first is gone). "Acknowledged" is a key's lifecycle.destroy record: after it,
  // every token object of the key must be gone for good.
  auto doomed = std::make_shared<std::vector<std::string>>();
  walk(Row{"destruction", nullptr,
           [this, doomed](int n) {
             const std::string stem = "doomed-" + std::to_string(n) + "-" + std::to_string(++serial_);
             *doomed = {stem + "-a", stem + "-b"};
             subjects_ = {doomed->begin(), doomed->end()};
             for (const auto& name : *doomed) {
               create_key(name);
               ASSERT_TRUE(wrap(name));
               must("schedule-destruction", {{"name", name}, {"wait_seconds", kMinDestructionWait}});
             }
             clock_.advance(std::chrono::seconds(kMinDestructionWait + 1));
           },
           [this, doomed] {
             live().scheduler().run_once();
             std::size_t recorded = 0;
             for (const auto& r : audit_records())
               for (const auto& name : *doomed)
                 if (str(r, "type") == "lifecycle.destroy" && str(r, "key") == name) ++recorded;
             return recorded == doomed->size();
           },
           [this, doomed] {
             bool all = true;
             for (const auto& name : *doomed) {
               auto k = key(name);
               if (!k || k->state != core::KeyState::destroyed) {
                 EXPECT_TRUE(k && k->state == core::KeyState::pending_destruction);
                 all = false;
                 continue;
               }
               for (const auto& v : k->versions) {
                 EXPECT_EQ(v.state, "destroyed");
                 auto there = live().vault().exists(v.object);
                 EXPECT_TRUE(there && !*there) << "(a) key " << name << " v" << v.version << " is destroyed in the state only";
               }
             }
             return all;
           }});
  if (HasFatalFailure()) return;

  // BYOK import into one job while it stays usable (a failed import must leave it so); a fresh
  // job once it is used.
  struct Job {
    std::string id, key_name, public_key;
  };
  auto job = std::make_shared<Job>();
  auto kcv = std::make_shared<std::string>();
  walk(Row{"import", [job] { *job = Job{}; },
           [this, job, kcv](int n) {
             auto current = job->id.empty() ? core::Outcome<core::StoredJob>(core::fail(core::Code::not_found, "none"))
                                            : live().jobs().get(job->id);
             if (!current || current->state != "active") {
               json::object result;
               const std::string name = "imported-" + std::to_string(n) + "-" + std::to_string(++serial_);
               must("create-import-job", {{"key_name", name}, {"algorithm", "aes-256-gcm"}, {"method", kImportMethod}}, &result);
               if (HasFatalFailure()) return;
               const auto& j = result.at("import_job").as_object();
               *job = Job{std::string(j.at("id").as_string()), name, std::string(j.at("public_key").as_string())};
             }
             subjects_ = {job->key_name};
           },
           [this, job, kcv] {
             Bytes material(32);
             EXPECT_EQ(RAND_bytes(material.data(), 32), 1);
             auto payload = byok::rsa_aes_kwp_payload(job->public_key, kImportHash, material);
             auto check = byok::key_check_value("aes-256-gcm", material);
             EXPECT_TRUE(payload && check);
             *kcv = *check;
             auto r = live().call(true, "POST", "/v1/admin/import-jobs/" + job->id + "/import",
                                  json::object{{"wrapped_key", base64_encode(*payload)}, {"kcv", *check}});
             return r.status == 200;
           },
           [this, job, kcv] {
             auto k = key(job->key_name);
             auto j = live().jobs().get(job->id);
             EXPECT_TRUE(j);
             if (!k) {
               EXPECT_EQ(j->state, "active") << "(a) the import did not take, yet its job is " << j->state;
               return false;
             }
             EXPECT_EQ(j->state, "used") << "(b) the key was imported but its job is still usable";
             EXPECT_EQ(k->versions.size(), 1u);
             EXPECT_EQ(k->versions.at(0).origin, "imported");
             EXPECT_EQ(k->versions.at(0).kcv.value_or(""), *kcv);
             return true;
           }});
}

TEST_F(FaultWalk, TheDataPlaneFailsClosedAtEveryStoreWriteAndSync) {
  auto old = std::make_shared<AcknowledgedBlob>();  // a blob made before the walk
  // Names of their own per walk: the token keeps the objects of earlier walks.
  auto aes = std::make_shared<std::string>(), hmac = std::make_shared<std::string>();
  auto setup = [this, old, aes, hmac] {
    *aes = "dp-aes-" + std::to_string(++serial_);
    *hmac = "dp-hmac-" + std::to_string(serial_);
    create_key(*aes);
    create_key(*hmac, "hmac-sha256");
    ASSERT_TRUE(wrap(*aes, old.get()));
  };
  // Each run starts from a restart, so the usage meter's first encryption reserves again.
  auto fresh = [this](int) { restart(); };
  std::vector<Row> rows = {
      {"wrap", setup, fresh, [this, aes] { return wrap(*aes); }, nullptr},
      {"unwrap", setup, fresh,
       [this, old, aes] {
         auto r = live().call(false, "POST", "/v1/keys/" + *aes + "/unwrap", json::object{{"ciphertext", old->ciphertext}});
         return r.status == 200 && r.body.at("plaintext").as_string() == old->plaintext;
       },
       nullptr},
      {"datakey", setup, fresh,
       [this, aes] {
         auto r = live().call(false, "POST", "/v1/keys/" + *aes + "/datakey", json::object{{"length", 32}});
         if (r.status != 200) return false;
         acknowledge(AcknowledgedBlob{*aes, std::string(r.body.at("ciphertext").as_string()),
                            std::string(r.body.at("plaintext").as_string())});
         return true;
       },
       nullptr},
      {"rewrap", setup, fresh,
       [this, old, aes] {
         auto r = live().call(false, "POST", "/v1/keys/" + *aes + "/rewrap", json::object{{"ciphertext", old->ciphertext}});
         if (r.status != 200) return false;
         acknowledge(AcknowledgedBlob{*aes, std::string(r.body.at("ciphertext").as_string()), old->plaintext});
         return true;
       },
       nullptr},
      {"derive", setup, fresh,
       [this, hmac] {
         auto r = live().call(false, "POST", "/v1/keys/" + *hmac + "/derive", json::object{{"info", "aW5mbw=="}, {"length", 32}});
         return r.status == 200;
       },
       nullptr},
      {"batch wrap", setup, fresh,
       [this, aes] {
         json::array items;
         std::vector<std::string> plaintexts;
         for (int i = 0; i < 3; ++i) {
           plaintexts.push_back(base64_encode(to_bytes("item " + std::to_string(i))));
           items.push_back(json::object{{"plaintext", plaintexts.back()}});
         }
         auto r = live().call(false, "POST", "/v1/keys/" + *aes + "/wrap", json::object{{"batch", items}});
         if (r.status != 200) return false;
         bool all = true;
         const auto& results = r.body.at("batch").as_array();
         for (std::size_t i = 0; i < results.size(); ++i) {
           const auto& item = results[i].as_object();
           if (item.contains("error")) {
             all = false;
             continue;
           }
           acknowledge(AcknowledgedBlob{*aes, std::string(item.at("ciphertext").as_string()), plaintexts[i]});
         }
         return all;
       },
       nullptr},
  };
  for (const auto& row : rows) {
    walk(row);
    if (HasFatalFailure()) return;
  }
}
