#pragma once
// custodyd composed in-process for the fuzzers, the way daemon/main.cpp composes it, minus the
// sockets: a real SoftHSMv2 token made once in a temp dir, SQLite state, an audit log with
// durability none (no fsync, so one execution stays fast), the real service and admin route
// tables, and a few keys, admin requests and import jobs to aim at. Made once per process, in
// LLVMFuzzerInitialize; never torn down (scripts/fuzz runs each target with its own TMPDIR and
// removes it afterwards).
#include <unistd.h>

#include <boost/json.hpp>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "daemon/core/admin/admin_requests.h"
#include "daemon/core/attestation/attestation.h"
#include "daemon/core/attestation/attestation_key.h"
#include "daemon/core/audit/audit_log.h"
#include "daemon/core/keys/data_plane.h"
#include "daemon/core/import/import_jobs.h"
#include "daemon/core/keys/key_admin.h"
#include "daemon/core/state/state_store.h"
#include "daemon/core/keys/token_key_vault.h"
#include "daemon/core/keys/usage_meter.h"
#include "daemon/service/admin_operations.h"
#include "daemon/service/routes.h"
#include "daemon/service/service.h"
#include "tests/fuzz/fuzz_check.h"
#include "tests/support/softhsm_token.h"

namespace custody::fuzz {

// Uids the fuzzers act as: root, the uid the keys' policies name, a uid with its own key, and
// a uid no policy names.
inline constexpr uid_t kPeerUids[] = {0, 1000, 1001, 65534};
inline constexpr uid_t kAllowedUid = 1000;

class DaemonHarness {
 public:
  static DaemonHarness& get() {
    static DaemonHarness* harness = new DaemonHarness();  // never destroyed: threads keep running to exit
    return *harness;
  }

  // Runs the request through the service like the transport does and waits for the answer
  // (which comes after its audit records are written, possibly on the audit thread).
  service::Response handle(bool admin, const service::Request& request) {
    std::mutex m;
    std::condition_variable cv;
    std::optional<service::Response> answer;
    (admin ? *admin_socket : *service_socket).handle(request, [&](service::Response r) {
      std::lock_guard lock(m);
      answer = std::move(r);
      cv.notify_one();
    });
    std::unique_lock lock(m);
    cv.wait(lock, [&] { return answer.has_value(); });
    if (++handled_ % 4096 == 0) drop_rotated_audit_files();
    return std::move(*answer);
  }

  std::string dir;
  std::vector<std::string> key_names;      // keys made at init, then names that do not exist
  std::vector<std::string> request_ids;    // admin requests proposed at init, then unknown ids
  std::string rsa_job, kwp_job;            // import jobs made at init
  std::vector<std::string> job_ids;        // those, then unknown ids

  test::TokenFiles token;
  std::unique_ptr<p11::Module> module;
  std::unique_ptr<p11::SessionPool> pool;
  std::unique_ptr<core::StateStore> store;
  core::SystemClock clock;
  std::unique_ptr<core::TokenKeyVault> vault;
  core::KeyRegistry registry;
  std::optional<core::AttestationKey> attestation_key;
  std::unique_ptr<core::AuditLog> audit;
  std::unique_ptr<core::KeyAdmin> key_admin;
  std::unique_ptr<core::UsageMeter> meter;
  std::unique_ptr<core::DataPlane> data_plane;
  service::Metrics metrics;
  service::HealthState health;
  std::unique_ptr<service::ServiceContext> context;
  std::unique_ptr<core::AdminRequests> requests;
  std::unique_ptr<core::TokenImporter> importer;
  std::unique_ptr<core::ImportJobs> jobs;
  std::unique_ptr<core::Attestor> attestor;
  std::unique_ptr<service::Service> service_socket, admin_socket;

 private:
  static std::string describe(const std::string& e) { return e; }
  static std::string describe(const core::Error& e) { return e.message; }
  template <class T, class E>
  static T need(Expected<T, E> v, const char* what) {
    if (!v) broken(std::string("harness setup: ") + what + ": " + describe(v.error()));
    return std::move(*v);
  }
  static void need_ok(bool ok, const char* what) {
    if (!ok) broken(std::string("harness setup: ") + what);
  }

  // Rotated audit files are not needed and would fill the disk over a long run.
  void drop_rotated_audit_files() {
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
      const std::string name = entry.path().filename().string();
      if (name.rfind("audit.jsonl.", 0) == 0) std::filesystem::remove(entry.path(), ec);
    }
  }

  DaemonHarness() {
    static test::TempDir temp;  // under TMPDIR
    dir = temp.path();
    token = test::make_softhsm_token(dir, "custody-fuzz");
    ::setenv("SOFTHSM2_CONF", token.conf.c_str(), 1);
    module = need(p11::Module::load(CUSTODY_SOFTHSM_MODULE, std::nullopt), "load SoftHSMv2");
    pool = std::make_unique<p11::SessionPool>(*module, p11::TokenSelector{token.label, std::nullopt},
                                              SecureString(token.pin.c_str()), 2);
    need_ok(static_cast<bool>(pool->start()), "session pool");
    store = need(core::StateStore::open(dir + "/state.db"), "state store");
    vault = std::make_unique<core::TokenKeyVault>(*pool);
    bool created = false;
    attestation_key.emplace(need(core::AttestationKey::open(*pool, created), "attestation key"));
    audit = need(core::AuditLog::open(dir + "/audit.jsonl", core::AuditDurability::none, clock), "audit log");
    audit->set_checkpoints(
        [this](std::string_view message) -> Expected<Bytes, std::string> {
          auto sig = attestation_key->sign(message);
          if (!sig) return unexpected(sig.error().message);
          return std::move(*sig);
        },
        1000, core::Peer{::getuid(), ::getgid(), ::getpid()});
    audit->set_rotation(16u << 20);
    key_admin = std::make_unique<core::KeyAdmin>(registry, *store, *vault, clock, core::LifecycleSettings{});
    meter = std::make_unique<core::UsageMeter>(*store);
    data_plane = std::make_unique<core::DataPlane>(registry, *vault, meter.get());
    context = std::make_unique<service::ServiceContext>(service::ServiceContext{
        .registry = registry,
        .vault = *vault,
        .data_plane = *data_plane,
        .key_admin = *key_admin,
        .audit = *audit,
        .metrics = metrics,
        .token = service::TokenSummary{"custody-fuzz", "SoftHSM project", "SoftHSM v2"},
        .max_json_depth = 16,
        .requests = nullptr,
        .attestor = nullptr,
        .jobs = nullptr,
        .health = health,
        .meter = meter.get(),
    });

    // Operators alice (EC P-256) and carol (RSA 2048), keys made by OpenSSL like the e2e tests'.
    std::vector<std::pair<std::string, std::string>> operator_keys;
    for (auto [name, algorithm] : {std::pair{"alice", "EC -pkeyopt ec_paramgen_curve:P-256"},
                                   std::pair{"bob", "EC -pkeyopt ec_paramgen_curve:P-256"},
                                   std::pair{"carol", "RSA -pkeyopt rsa_keygen_bits:2048"}}) {
      const std::string key = dir + "/" + name + ".key";
      need_ok(test::run("openssl genpkey -algorithm " + std::string(algorithm) + " -out " + key +
                        " 2>/dev/null && openssl pkey -in " + key + " -pubout -out " + key + ".pub 2>/dev/null") == 0,
              "operator keys");
      operator_keys.emplace_back(name, test::read_file(key + ".pub"));
    }
    const core::LifecycleSettings lifecycle{};
    service::ServiceContext& c = *context;
    requests = std::make_unique<core::AdminRequests>(
        *store, need(core::OperatorSet::from_pem(operator_keys), "operators"), core::QuorumPolicy{}, clock,
        "fuzz-instance", std::chrono::seconds(900),
        [&c, lifecycle](const std::string& op, const boost::json::object& params) {
          return service::validate_admin_operation(c, lifecycle, op, params);
        },
        [&c](const std::string& op, const boost::json::object& params, const std::string& id) {
          return service::run_admin_operation(c, op, params, id);
        },
        [&c](const std::string& op, const boost::json::object& params) {
          return service::admin_operation_result(c, op, params);
        },
        [this](std::vector<core::AuditEvent> events) { return audit->write(std::move(events)); });
    context->requests = requests.get();
    importer = std::make_unique<core::TokenImporter>(*pool);
    jobs = std::make_unique<core::ImportJobs>(*store, *importer, registry, *key_admin, clock);
    context->jobs = jobs.get();
    attestor = std::make_unique<core::Attestor>(
        *attestation_key, *vault, *audit, *requests,
        core::AttestedToken{token.label, "SoftHSM project", "SoftHSM v2", "0", "2.6", "2.6", CUSTODY_SOFTHSM_MODULE,
                            "SoftHSM", "Implementation of PKCS11", "2.6"},
        core::AttestedDaemon{"fuzz", "fuzz-instance", std::string(64, '0')}, clock);
    attestor->set_import_jobs(jobs.get());
    context->attestor = attestor.get();

    // Keys to aim at: one per algorithm for the allowed uid, one for another uid, a disabled one.
    auto policy = [](const std::string& text) { return need(core::parse_policy(boost::json::parse(text)), "policy"); };
    const std::string mine = "[{\"uid\":1000,\"operations\":[\"wrap\",\"unwrap\",\"datakey\",\"rewrap\",\"derive\"]}]";
    need_ok(static_cast<bool>(key_admin->create_key("demo", core::Algorithm::aes_256_gcm, policy(mine))), "key demo");
    need_ok(static_cast<bool>(key_admin->rotate_key("demo")), "rotate demo");
    need_ok(static_cast<bool>(key_admin->create_key("derive", core::Algorithm::hmac_sha256, policy(mine))), "key derive");
    need_ok(static_cast<bool>(key_admin->create_key("transport", core::Algorithm::aes_256_kwp_transport, policy("[]"))),
            "key transport");
    need_ok(static_cast<bool>(key_admin->create_key(
                "theirs", core::Algorithm::aes_256_gcm, policy("[{\"uid\":1001,\"operations\":[\"wrap\",\"unwrap\"]}]"))),
            "key theirs");
    need_ok(static_cast<bool>(key_admin->create_key("off", core::Algorithm::aes_256_gcm, policy(mine))), "key off");
    need_ok(static_cast<bool>(key_admin->set_enabled("off", false)), "disable off");
    key_names = {"demo", "derive", "transport", "theirs", "off", "missing", "", "a.b_c-9", std::string(200, 'k'), "..",
                 "%2e%2e"};

    // Pending admin requests (their ids are random: the fuzzer reaches them by index).
    for (const char* body : {R"({"operation":"rotate-key","params":{"name":"demo"}})",
                             R"({"operation":"create-key","params":{"name":"fresh","algorithm":"aes-256-gcm","policy":[]}})",
                             R"({"operation":"disable-key","params":{"name":"theirs"}})"}) {
      auto v = boost::json::parse(body).as_object();
      auto r = need(requests->propose(std::string(v.at("operation").as_string()), v.at("params").as_object(),
                                      core::AdminCaller{"fuzz-setup", core::Peer{0, 0, ::getpid()}}),
                    "propose");
      request_ids.push_back(r.id);
    }
    request_ids.insert(request_ids.end(), {"0123456789abcdef0123456789abcdef", "", "x", std::string(300, 'f')});

    // Import jobs: RSA-OAEP (3072, SHA-1: all SoftHSMv2 offers) and AES-KWP under the transport key.
    rsa_job = need(jobs->create(boost::json::parse(R"({"key_name":"byok-rsa","algorithm":"aes-256-gcm",
                                                        "method":"rsa-oaep-3072-sha1-aes-256"})")
                                    .as_object(),
                                ""),
                   "rsa import job")
                  .id;
    kwp_job = need(jobs->create(boost::json::parse(R"({"key_name":"byok-kwp","algorithm":"hmac-sha256",
                                                        "method":"aes-kwp","transport_key":"transport"})")
                                    .as_object(),
                                ""),
                   "kwp import job")
                  .id;
    job_ids = {rsa_job, kwp_job, "0123456789abcdef0123456789abcdef", ""};

    service_socket = std::make_unique<service::Service>(service::service_routes(*context), *context);
    admin_socket = std::make_unique<service::Service>(service::admin_routes(*context), *context);
  }

  std::uint64_t handled_ = 0;
};

}  // namespace custody::fuzz
