// kill -9 at random moments while clients wrap, make data keys, rotate the key through dual
// control and import a key (BYOK); after each restart every acknowledged change and audit record
// must be there, the chain must verify and state and token must reconcile.
// CUSTODY_CRASH_SEED replays a run's kill timings (the seed is printed); CUSTODY_CRASH_ITERATIONS
// sets the kills per scenario (default 8; keep it small under sanitizers).
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <optional>
#include <random>
#include <set>
#include <thread>

#include "tests/crash/load_clients.h"
#include "tests/crash/restart_checks.h"

using namespace custody;
using namespace custody::crash;
using namespace custody::test;
namespace json = boost::json;

namespace {

std::uint64_t env_number(const char* name, std::uint64_t fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::strtoull(v, nullptr, 10) : fallback;
}

// An RSA-OAEP import method the token offers (SoftHSMv2 2.6 has SHA-1 only), preferring SHA-256,
// then 3072 bits (the faster key generation).
std::string rsa_import_method(Daemon& d) {
  auto listing = json::parse(d.admin().call("GET", "/v1/admin/import-jobs")->body);
  std::string best;
  auto score = [](const std::string& m) { return (m.find("sha256") != std::string::npos) * 2 + (m.find("3072") != std::string::npos); };
  for (const auto& m : listing.at("methods").as_array()) {
    const std::string method(m.as_string());
    if (method.rfind("rsa-oaep-", 0) == 0 && (best.empty() || score(method) > score(best))) best = method;
  }
  return best;
}

// Adds each problem not seen at an earlier kill as a test failure naming the seed and the kill;
// false if there was any problem.
bool report(const Problems& problems, const char* check, std::uint64_t seed, int kill, std::set<std::string>& seen) {
  constexpr std::size_t kShown = 10;
  std::size_t shown = 0, more = 0;
  for (const auto& p : problems) {
    if (!seen.insert(p).second) continue;
    if (shown++ < kShown)
      ADD_FAILURE() << "[seed " << seed << ", kill " << kill << "] " << check << ": " << p;
    else
      ++more;
  }
  if (more) ADD_FAILURE() << "[seed " << seed << ", kill " << kill << "] " << check << ": " << more << " more";
  return problems.empty();
}

// Copies the audit files, the state and the daemon's log where a failure can be looked at after
// the test has removed its directory; returns that place.
std::string keep_evidence(const Daemon& d, std::uint64_t seed) {
  namespace fs = std::filesystem;
  const fs::path keep = fs::temp_directory_path() / ("custody-crash-" + std::to_string(seed));
  std::error_code ec;
  fs::create_directories(keep, ec);
  for (const auto& f : audit_files(d.audit_path())) fs::copy_file(f, keep / fs::path(f).filename(), fs::copy_options::overwrite_existing, ec);
  for (const char* f : {"custodyd.log", "state.db", "state.db-wal"})
    fs::copy_file(fs::path(d.dir()) / f, keep / f, fs::copy_options::overwrite_existing, ec);
  return keep.string();
}

void kill_under_load(const std::string& durability, const std::string& tag) {
  const std::uint64_t seed = env_number("CUSTODY_CRASH_SEED", std::random_device{}());
  const int iterations = static_cast<int>(env_number("CUSTODY_CRASH_ITERATIONS", 8));
  std::cout << "[ crash    ] " << tag << ": seed " << seed << ", " << iterations
            << " kills (replay with CUSTODY_CRASH_SEED=" << seed << ")" << std::endl;
  ::testing::Test::RecordProperty("seed", std::to_string(seed));
  std::mt19937_64 rng(seed);

  DaemonOptions options;
  options.durability = durability;
  // Frequent checkpoints and rotated files, so kills land around both.
  options.extra_audit = "  checkpoint_every: 50\n  max_file_bytes: 4096\n";
  Daemon d(options);
  ASSERT_EQ(d.create_key("load", "aes-256-gcm", allow_me_everything()), 201);
  auto attestation = d.service().call("POST", "/v1/attestation", R"({"nonce":""})");
  ASSERT_TRUE(attestation && attestation->status == 200);
  const std::string attestation_pem = d.dir() + "/attestation.pem";
  write_file(attestation_pem, std::string(json::parse(attestation->body).at("public_key").as_string()));
  const std::string import_method = rsa_import_method(d);
  ASSERT_FALSE(import_method.empty()) << "the token offers no RSA-OAEP import method";

  const LoadTarget target{d.service_socket(), d.admin_socket(), d.dir(), "load", allow_me_everything()};
  Ledger ledger;
  std::size_t checked_ciphertexts = 0;
  std::set<std::string> seen;  // problems already reported
  std::string evidence;        // where the first failure's files were kept
  std::uniform_int_distribution<int> kill_after_ms(50, 400);
  for (int kill = 0; kill < iterations; ++kill) {
    const std::string prefix = tag + "-k" + std::to_string(kill);
    // The import job is made before the load (its RSA key generation holds the token's one
    // worker for long); the importer imports into it and makes the next one while the load runs.
    // At every other kill only, so the others crash a busy data plane.
    std::optional<json::object> job;
    const std::string key_name = "imp-" + std::to_string(kill);
    if (kill % 2 == 0) {
      auto [status, request] = d.admin_operation("create-import-job", {{"key_name", key_name}, {"algorithm", "aes-256-gcm"},
                                                                        {"method", import_method},
                                                                        {"policy", json::parse(allow_me_everything())}});
      ASSERT_EQ(status, 201) << json::serialize(request);
      job = request.at("result").at("import_job").as_object();
      ledger.import_job(std::string(job->at("id").as_string()));
    }
    std::atomic<bool> stop{false};
    std::vector<std::thread> clients;
    int n = 0;
    for (auto kind : {DataPlaneKind::wrap, DataPlaneKind::wrap, DataPlaneKind::batch_wrap, DataPlaneKind::datakey})
      clients.emplace_back(run_data_plane_client, std::cref(target), kind, prefix + "-c" + std::to_string(n++), rng(),
                           std::cref(stop), std::ref(ledger));
    clients.emplace_back(run_rotator, std::cref(target), prefix + "-rot", std::cref(stop), std::ref(ledger));
    if (job) {
      const std::string import_dir = d.dir() + "/import-" + std::to_string(kill);
      std::filesystem::create_directory(import_dir);
      clients.emplace_back(run_importer, std::cref(target), *job, key_name + "-next", prefix + "-imp", import_dir,
                           std::cref(stop), std::ref(ledger));
    }

    // The moment of the crash is the point of the test: a seeded random delay, not a wait.
    const int delay_ms = kill_after_ms(rng);
    std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
    d.kill_hard();
    stop = true;
    for (auto& c : clients) c.join();
    ASSERT_NO_THROW(d.start()) << "[seed " << seed << ", kill " << kill << "] custodyd does not come back";

    std::cout << "[ crash    ] kill " << kill << " after " << delay_ms << " ms: " << ledger.ciphertexts().size()
              << " ciphertexts, " << ledger.admin_requests().size() << " admin requests, " << ledger.imports().size()
              << " imports acknowledged so far" << std::endl;
    // New ciphertexts, and a sample of older ones: a later recovery must not lose them either.
    auto all = ledger.ciphertexts();
    std::vector<AckedCiphertext> to_unwrap(all.begin() + static_cast<long>(checked_ciphertexts), all.end());
    for (std::size_t i = 0; i < 128 && checked_ciphertexts > 0; ++i) to_unwrap.push_back(all[rng() % checked_ciphertexts]);
    checked_ciphertexts = all.size();
    bool ok = report(check_ciphertexts(d, to_unwrap), "ciphertexts", seed, kill, seen);
    ok &= report(check_admin_requests(d, AuditIndex(d.audit_path()), ledger.admin_requests()), "admin requests", seed, kill, seen);
    ok &= report(check_imports(d, ledger.import_jobs(), ledger.imports()), "imports", seed, kill, seen);
    ok &= report(check_reconciled(d), "reconcile", seed, kill, seen);
    ok &= report(check_import_job_objects(d), "import job objects", seed, kill, seen);
    // Read once the checks above were answered: their records are in the log too, none is torn.
    ok &= report(check_audit_records(AuditIndex(d.audit_path()), ledger.records()), "audit records", seed, kill, seen);
    const bool chain_ok = report(check_audit_chain(d.audit_path(), attestation_pem, d.dir()), "audit chain", seed, kill, seen);
    if ((!ok || !chain_ok) && evidence.empty()) {
      evidence = keep_evidence(d, seed);
      std::cout << "[ crash    ] audit files, state and log at the first failure kept in " << evidence << std::endl;
    }
    if (!chain_ok) break;  // a chain broken once stays broken
  }
  const auto admin = ledger.admin_requests();
  const auto rotations = std::count_if(admin.begin(), admin.end(), [](const auto& a) {
    return a.second.executed && a.second.operation == "rotate-key";
  });
  const auto records = ledger.records();
  const auto approvals = std::count_if(records.begin(), records.end(), [](const auto& r) { return r.type == "admin.approve"; });
  std::cout << "[ crash    ] " << tag << ": " << ledger.ciphertexts().size() << " acknowledged ciphertexts, " << approvals
            << " approvals, " << rotations << " rotations, " << ledger.import_jobs().size() << " import jobs, "
            << ledger.imports().size() << " imports survived the kills" << std::endl;
  // A run in which nothing was acknowledged before the kills would prove nothing.
  EXPECT_GT(ledger.ciphertexts().size(), 0u);
  EXPECT_GT(approvals, 0);
}

}  // namespace

TEST(CrashSafety, KillNineUnderLoadLosesNothingAcknowledgedWithGroupDurability) { kill_under_load("group", "group"); }

TEST(CrashSafety, KillNineUnderLoadLosesNothingAcknowledgedWithAlwaysDurability) { kill_under_load("always", "always"); }
