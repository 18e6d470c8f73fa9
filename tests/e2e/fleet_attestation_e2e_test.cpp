// Per-instance attestation keys in a fleet (issue #18; docs/fleet.md): each custodyd of a fleet has
// its own host id (kept beside its audit log) and its own attestation key in the shared token,
// labelled custody:attestation:<host id>; each host's audit checkpoints are signed with its own
// key; every member's attestation report lists the fleet's instances and their keys. And
// AttestationKey::open is safe when processes race to make the same label.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include "common/base64.h"
#include "common/random.h"
#include "daemon/core/attestation/attestation_key.h"
#include "daemon/core/attestation/host_identity.h"
#include "tests/support/daemon_process.h"
#include "tests/support/metric_value.h"
#include "tests/support/postgres_cluster.h"

using namespace custody;
using namespace custody::test;
namespace json = boost::json;

namespace {

class Cluster : public ::testing::Environment {
 public:
  static PostgresCluster* get() { return cluster_.get(); }
  static const std::string& why_not() { return why_not_; }
  void SetUp() override {
    if (auto reason = PostgresCluster::unavailable_reason(); !reason.empty()) {
      why_not_ = reason;
      return;
    }
    auto started = PostgresCluster::start();
    ASSERT_TRUE(started) << started.error();
    cluster_ = std::move(*started);
  }
  void TearDown() override { cluster_.reset(); }

 private:
  static inline std::unique_ptr<PostgresCluster> cluster_;
  static inline std::string why_not_;
};
[[maybe_unused]] auto* const kCluster = ::testing::AddGlobalTestEnvironment(new Cluster);

// One member's attestation: the envelope and its report parsed.
struct Attested {
  std::string key_id, public_key, report_bytes;
  Bytes signature;
  json::object report;
};

Attested attest(Daemon& d) {
  auto [status, envelope] = d.post("/v1/attestation", {{"nonce", "AAECAw=="}});
  if (status != 200) throw std::runtime_error("attestation answered " + std::to_string(status) + ": " + json::serialize(envelope) + "\nits log:\n" + d.log());
  Attested a;
  a.key_id = std::string(envelope.at("key_id").as_string());
  a.public_key = std::string(envelope.at("public_key").as_string());
  auto report = base64_decode(std::string(envelope.at("report").as_string())).value();
  a.report_bytes.assign(report.begin(), report.end());
  auto signature = base64_decode(std::string(envelope.at("signature").as_string())).value();
  a.signature.assign(signature.begin(), signature.end());
  a.report = json::parse(a.report_bytes).as_object();
  return a;
}

// openssl dgst -verify over the exact report bytes: 0 when the signature holds.
int openssl_verify(const std::string& dir, const std::string& report_bytes, const Bytes& signature, const std::string& pem) {
  write_file(dir + "/r.json", report_bytes);
  write_file(dir + "/r.sig", std::string(signature.begin(), signature.end()));
  write_file(dir + "/r.pem", pem);
  return run("openssl dgst -sha256 -verify " + dir + "/r.pem -signature " + dir + "/r.sig " + dir + "/r.json >/dev/null 2>&1");
}

std::string text_of(const json::value& v) { return v.is_string() ? std::string(v.as_string()) : json::serialize(v); }

std::string host_id_of(const Daemon& d) {
  std::string text = read_file(core::host_identity_path(d.audit_path()));
  if (!text.empty() && text.back() == '\n') text.pop_back();
  return text;
}

class FleetAttestationE2E : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!Cluster::get()) GTEST_SKIP() << Cluster::why_not();
    static int next = 0;
    database_ = "custody_fleet_attest_" + std::to_string(::getpid()) + "_" + std::to_string(next++);
    auto made = Cluster::get()->create_database(database_);
    ASSERT_TRUE(made) << made.error();
    // A fresh token no daemon has touched, and the operators' keys, made before any member starts.
    token_ = make_softhsm_token(shared_.path(), "custody-fleet");
    for (auto [name, algorithm] : {std::pair{"alice", "EC -pkeyopt ec_paramgen_curve:P-256"},
                                   std::pair{"bob", "EC -pkeyopt ec_paramgen_curve:P-256"},
                                   std::pair{"carol", "RSA -pkeyopt rsa_keygen_bits:2048"}}) {
      const std::string key = shared_.path() + "/" + name;
      ASSERT_EQ(run("openssl genpkey -algorithm " + std::string(algorithm) + " -out " + key + ".key 2>/dev/null && openssl pkey -in " +
                    key + ".key -pubout -out " + key + ".pub 2>/dev/null"),
                0);
    }
  }

  DaemonOptions member_options() const {
    DaemonOptions o;
    o.shared_token = token_;
    o.operator_keys_from = shared_.path();
    const auto settings = Cluster::get()->settings(database_);
    o.state_yaml = "  backend: postgresql\n  dsn: \"" + settings.dsn + "\"\n  password_file: " + settings.password_file + "\n";
    return o;
  }

  // Members that catch the token in the middle of another's write try again by themselves
  // (p11::quirks::may_be_a_shared_store_race): any failure to start is a failure.
  static std::unique_ptr<Daemon> start_member(const DaemonOptions& options, std::string& error) {
    try {
      return std::make_unique<Daemon>(options);
    } catch (const std::exception& e) {
      error = e.what();
      return nullptr;
    }
  }

  // n members started at the same moment (no one waits for another's start); a member that did
  // not start leaves its error in failures.
  std::vector<std::unique_ptr<Daemon>> start_together(int n, std::vector<std::string>& failures,
                                                      const std::string& extra_yaml = "") {
    std::vector<std::unique_ptr<Daemon>> members(n);
    std::vector<std::string> errors(n);
    std::atomic<int> ready{0};
    std::vector<std::thread> threads;
    for (int i = 0; i < n; ++i)
      threads.emplace_back([&, i] {
        DaemonOptions options = member_options();
        options.extra_yaml = extra_yaml;
        ++ready;
        while (ready.load() < n) std::this_thread::yield();
        members[i] = start_member(options, errors[i]);
      });
    for (auto& t : threads) t.join();
    for (auto& e : errors)
      if (!e.empty()) failures.push_back(e);
    return members;
  }

  std::string database_;
  TempDir shared_;
  TokenFiles token_;
};

// The bug: members starting together on a fresh token each made a custody:attestation pair, and
// then every daemon refused to start ("more than one object matches"); and a fleet had one key.
TEST_F(FleetAttestationE2E, ThreeMembersStartedAtOnceOnAFreshTokenAllStartEachWithItsOwnKey) {
  std::vector<std::string> failures;
  auto fleet = start_together(3, failures);
  ASSERT_TRUE(failures.empty()) << failures.size() << " member(s) did not start; the first:\n" << failures.front();
  std::set<std::string> key_ids, host_ids;
  for (auto& d : fleet) {
    const Attested a = attest(*d);
    key_ids.insert(a.key_id);
    const std::string host = host_id_of(*d);
    EXPECT_TRUE(core::is_host_id(host)) << host;
    host_ids.insert(host);
    EXPECT_EQ(text_of(a.report.at("daemon").at("instance")), host) << "the report names the host that signed it";
    // custodyctl attest key shows the same key as the envelope.
    const std::string out = d->dir() + "/attest-key.json";
    ASSERT_EQ(run(std::string(CUSTODYCTL_PATH) + " --json --socket " + d->service_socket() + " attest key >" + out), 0);
    EXPECT_EQ(text_of(json::parse(read_file(out)).at("key_id")), a.key_id);
    // The start record names the host and its key.
    const auto records = d->audit_records();
    ASSERT_FALSE(records.empty());
    EXPECT_EQ(records.front().at("type"), "daemon.start");
    EXPECT_EQ(text_of(records.front().at("instance")), host);
    EXPECT_EQ(text_of(records.front().at("attestation_key_id")), a.key_id);
  }
  EXPECT_EQ(key_ids.size(), 3u) << "each member signs with its own attestation key";
  EXPECT_EQ(host_ids.size(), 3u) << "each member has its own host id";
  // The shared instance id stays one for the fleet (admin challenges name it).
  EXPECT_EQ(attest(*fleet[0]).report.at("daemon").at("instance_id"), attest(*fleet[1]).report.at("daemon").at("instance_id"));
}

// Any member's report lists all three instances, sorted, with the key each of them reports itself,
// and the signature covers the list.
TEST_F(FleetAttestationE2E, EveryMembersReportListsTheFleetsInstancesAndTheirKeys) {
  std::vector<std::string> failures;
  auto fleet = start_together(3, failures);
  ASSERT_TRUE(failures.empty()) << failures.front();
  std::map<std::string, Attested> by_host;
  for (auto& d : fleet) by_host[host_id_of(*d)] = attest(*d);
  for (auto& d : fleet) {
    const Attested a = attest(*d);
    ASSERT_TRUE(a.report.contains("fleet")) << a.report_bytes;
    const auto& list = a.report.at("fleet").as_array();
    ASSERT_EQ(list.size(), 3u) << a.report_bytes;
    auto expected = by_host.begin();
    for (const auto& entry : list) {
      EXPECT_EQ(text_of(entry.at("instance")), expected->first) << "sorted by instance";
      EXPECT_EQ(text_of(entry.at("key_id")), expected->second.key_id);
      EXPECT_EQ(text_of(entry.at("public_key")), expected->second.public_key);
      ++expected;
    }
    EXPECT_EQ(openssl_verify(d->dir(), a.report_bytes, a.signature, a.public_key), 0);
    // A different key for another host in the list breaks the signature.
    std::string forged = a.report_bytes;
    const std::string other_key = std::string(list.at(list.size() - 1).at("key_id").as_string());
    const auto at = forged.find(other_key);
    ASSERT_NE(at, std::string::npos);
    forged[at] = forged[at] == '0' ? '1' : '0';
    EXPECT_NE(openssl_verify(d->dir(), forged, a.signature, a.public_key), 0) << "the signature must cover the fleet list";
  }
}

// custodyctl audit verify --public-key: each host's log (its checkpoints) verifies with its own
// key and fails with another member's.
TEST_F(FleetAttestationE2E, EachMembersAuditLogVerifiesWithItsOwnKeyAndFailsWithAnothers) {
  std::vector<std::string> failures;
  auto fleet = start_together(3, failures);
  ASSERT_TRUE(failures.empty()) << failures.front();
  std::vector<std::string> pems;
  for (auto& d : fleet) {
    pems.push_back(d->dir() + "/attestation.pem");
    write_file(pems.back(), attest(*d).public_key);
  }
  for (auto& d : fleet) ASSERT_EQ(d->terminate(), 0) << d->log();  // writes the closing checkpoint
  for (std::size_t i = 0; i < fleet.size(); ++i) {
    bool checkpointed = false;
    for (const auto& r : fleet[i]->audit_records()) checkpointed = checkpointed || r.at("type") == "checkpoint";
    ASSERT_TRUE(checkpointed);
    for (std::size_t k = 0; k < fleet.size(); ++k) {
      const std::string out = fleet[i]->dir() + "/verify-" + std::to_string(k) + ".out";
      const int status = run(std::string(CUSTODYCTL_PATH) + " audit verify " + fleet[i]->audit_path() + " --public-key " +
                             pems[k] + " >" + out + " 2>&1");
      if (i == k) EXPECT_EQ(status, 0) << "member " << i << "'s log with its own key: " << read_file(out);
      else EXPECT_NE(status, 0) << "member " << i << "'s log verified with member " << k << "'s key: " << read_file(out);
    }
  }
}

// A member restarted keeps its host id and its key; the fleet still lists one key per host.
TEST_F(FleetAttestationE2E, ARestartedMemberKeepsItsHostIdAndKey) {
  std::vector<std::string> failures;
  auto fleet = start_together(2, failures);
  ASSERT_TRUE(failures.empty()) << failures.front();
  Daemon& a = *fleet[0];
  const std::string host = host_id_of(a);
  const std::string key_id = attest(a).key_id;
  struct stat st {};
  ASSERT_EQ(::stat(core::host_identity_path(a.audit_path()).c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  ASSERT_EQ(a.terminate(), 0);
  a.start();
  EXPECT_EQ(host_id_of(a), host);
  const Attested again = attest(a);
  EXPECT_EQ(again.key_id, key_id) << "a restart must not make a new attestation key";
  EXPECT_EQ(text_of(again.report.at("daemon").at("instance")), host);
  EXPECT_EQ(again.report.at("fleet").as_array().size(), 2u) << again.report_bytes;
  // Its log, across the restart, is one chain signed by one key.
  write_file(a.dir() + "/own.pem", again.public_key);
  ASSERT_EQ(a.terminate(), 0);
  EXPECT_EQ(run(std::string(CUSTODYCTL_PATH) + " audit verify " + a.audit_path() + " --public-key " + a.dir() + "/own.pem >/dev/null"), 0);
}

// A host identity file that cannot be used stops the start with a message naming the file; a new
// id would silently give the host a new attestation key.
TEST_F(FleetAttestationE2E, AMalformedHostIdentityFileIsFatalAndNamesTheFile) {
  Daemon a(member_options());
  ASSERT_EQ(a.terminate(), 0);
  const std::string path = core::host_identity_path(a.audit_path());
  write_file(path, "not-a-host-id\n");
  try {
    a.start();
    FAIL() << "custodyd started with a malformed host identity file";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
  }
}

// XKS GetHealthStatus on a fleet member counts the fleet (xksProxyFleetSize): the hosts whose
// attestation keys the shared token holds. Called with curl's own SigV4 signer.
// SoftHSMv2 can lose objects from a fresh view of its store (the listing raced another process's
// write: the CI run where a member's report answered "the attestation key is missing"). A report's
// fleet list is read on a fresh module; when that view is blind, the member's own pair is missing
// from the list and from the signature's search, and both are read again on another module.
TEST_F(FleetAttestationE2E, AReportReadFromAViewThatLostObjectsIsReadAgainOnAFreshOne) {
  DaemonOptions o = member_options();
  o.module = CUSTODY_FAULT_SHIM;
  // The first initialisation starts the member; the second is the one the report's listing asks for.
  o.env["CUSTODY_SHIM_BLIND_INITIALISATION"] = "2";
  Daemon d(o);
  const Attested a = attest(d);
  const auto& list = a.report.at("fleet").as_array();
  ASSERT_EQ(list.size(), 1u) << a.report_bytes;
  EXPECT_EQ(text_of(list.at(0).at("instance")), host_id_of(d));
  EXPECT_EQ(text_of(list.at(0).at("key_id")), a.key_id);
  EXPECT_EQ(openssl_verify(d.dir(), a.report_bytes, a.signature, a.public_key), 0);
}

// Every report reads the fleet's list on a fresh module on SoftHSMv2; a peer asking for reports
// as fast as it can must not keep the module restarting under every other caller: one restart,
// then at most one more every 5 s.
TEST_F(FleetAttestationE2E, ReportsAskedForAsFastAsPossibleRestartTheModuleAtMostOnceEveryFiveSeconds) {
  Daemon d(member_options());
  if (d.log().find("SoftHSM") == std::string::npos) GTEST_SKIP() << "only SoftHSMv2's view of its store goes stale";
  const double before = metric_value(d, "custody_token_resets_total");
  const auto started = std::chrono::steady_clock::now();
  for (int i = 0; i < 30; ++i) ASSERT_EQ(attest(d).report.at("fleet").as_array().size(), 1u);
  const auto seconds = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - started).count();
  const double restarts = metric_value(d, "custody_token_resets_total") - before;
  EXPECT_GE(restarts, 1) << "the first report reads the list on a fresh module";
  EXPECT_LE(restarts, 1 + seconds / 5) << "30 reports in " << seconds << " s";
}

TEST_F(FleetAttestationE2E, XksHealthOnAMemberCountsTheFleet) {
  const std::string secret = shared_.path() + "/xks-secret";
  write_file(secret, "fleet-secret-access-key-of-forty-three-chars\n");
  ASSERT_EQ(::chmod(secret.c_str(), 0600), 0);
  const std::string xks = "xks:\n  address: 127.0.0.1\n  port: 0\n  plain_http: true\n  region: us-east-1\n"
                          "  uri_prefix: /fleet\n  credentials:\n    - {access_key_id: AKIAXKSFLEET23456723, secret_file: " +
                          secret + "}\n  acts_as_uid: 60999\n  keys: {kms-key: xks-key}\n  health_key: xks-health\n";
  std::vector<std::string> failures;
  auto fleet = start_together(3, failures, xks);
  ASSERT_TRUE(failures.empty()) << failures.front();
  ASSERT_EQ(fleet[0]->create_key("xks-health", "aes-256-gcm", allow_me_everything()), 201);
  std::smatch port;
  const std::string log = fleet[1]->log();
  ASSERT_TRUE(std::regex_search(log, port, std::regex("xks listener on 127\\.0\\.0\\.1:([0-9]+)"))) << log;
  const std::string out = fleet[1]->dir() + "/xks-health.json";
  write_file(fleet[1]->dir() + "/xks-health-body.json",
             R"({"requestMetadata":{"kmsRequestId":"fleet-health","kmsOperation":"KmsHealthCheck"}})");
  ASSERT_EQ(run("curl -sS --fail-with-body --aws-sigv4 aws:amz:us-east-1:kms-xks-proxy --user AKIAXKSFLEET23456723:"
                "fleet-secret-access-key-of-forty-three-chars -H 'content-type: application/json' --data-binary @" +
                fleet[1]->dir() + "/xks-health-body.json http://127.0.0.1:" + port[1].str() +
                "/fleet/kms/xks/v1/health > " + out),
            0)
      << read_file(out);
  const auto health = json::parse(read_file(out));
  EXPECT_EQ(health.at("xksProxyFleetSize").as_int64(), 3) << read_file(out);
}

// One host (SQLite) is unchanged: no fleet list, no host instance in the report, and the start
// record names the store's instance id.
TEST(SingleHostAttestationE2E, ASingleHostReportHasNoFleetListAndItsStartRecordNamesTheInstanceId) {
  Daemon d;
  const Attested a = attest(d);
  EXPECT_FALSE(a.report.contains("fleet")) << a.report_bytes;
  EXPECT_FALSE(a.report.at("daemon").as_object().contains("instance")) << a.report_bytes;
  const auto records = d.audit_records();
  ASSERT_FALSE(records.empty());
  EXPECT_EQ(records.front().at("instance"), a.report.at("daemon").at("instance_id"));
  struct stat st {};
  EXPECT_NE(::stat(core::host_identity_path(d.audit_path()).c_str(), &st), 0) << "one host keeps no host identity file";
}

// AttestationKey::open, in process on the shared test token.
std::string fresh_label() {
  std::uint8_t r[8];
  EXPECT_TRUE(fill_random(r));
  return "custody:attestation:race-" + hex_lower(r);
}

// A pair like the one open() makes, with a chosen CKA_ID: what a racing process left.
void make_pair(p11::SessionPool& pool, const std::string& label, const Bytes& id) {
  static constexpr std::uint8_t kP256[] = {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};
  auto lease = pool.acquire();
  ASSERT_TRUE(lease);
  p11::AttributeTemplate pt, kt;
  pt.add_ulong(CKA_CLASS, CKO_PUBLIC_KEY).add_ulong(CKA_KEY_TYPE, CKK_EC).add_bytes(CKA_EC_PARAMS, kP256);
  pt.add_bytes(CKA_ID, id).add_string(CKA_LABEL, label).add_bool(CKA_TOKEN, true).add_bool(CKA_VERIFY, true);
  kt.add_ulong(CKA_CLASS, CKO_PRIVATE_KEY).add_ulong(CKA_KEY_TYPE, CKK_EC).add_bytes(CKA_ID, id);
  kt.add_string(CKA_LABEL, label).add_bool(CKA_TOKEN, true).add_bool(CKA_PRIVATE, true);
  kt.add_bool(CKA_SENSITIVE, true).add_bool(CKA_EXTRACTABLE, false).add_bool(CKA_SIGN, true);
  kt.add_bool(CKA_DECRYPT, false).add_bool(CKA_UNWRAP, false).add_bool(CKA_DERIVE, false).add_bool(CKA_COPYABLE, false);
  pt.add_bool(CKA_COPYABLE, false);
  auto pair = lease->session().generate_key_pair(CKM_EC_KEY_PAIR_GEN, pt, kt);
  ASSERT_TRUE(pair) << pair.error().describe();
}

std::size_t pairs_labelled(p11::SessionPool& pool, const std::string& label) {
  auto lease = pool.acquire();
  EXPECT_TRUE(lease);
  p11::AttributeTemplate t;
  t.add_ulong(CKA_CLASS, CKO_PRIVATE_KEY).add_string(CKA_LABEL, label);
  auto found = lease->session().find_all(t);
  EXPECT_TRUE(found);
  return found ? found->size() : 0;
}

// Two racers both finished: every later open keeps the lowest CKA_ID and destroys nothing it did
// not make (before: "more than one object matches", and no daemon started).
TEST(AttestationKeyRace, TwoPairsUnderOneLabelOpenTheLowestCkaIdAndDestroyNeither) {
  auto& pool = SharedToken::get().pool();
  const std::string label = fresh_label();
  // Two ids that differ in their first byte (and are unique on the token: sign() finds by CKA_ID).
  Bytes low(16), high;
  ASSERT_TRUE(fill_random(low));
  low[0] = 0x01;
  high = low;
  high[0] = 0x02;
  ASSERT_NO_FATAL_FAILURE(make_pair(pool, label, high));
  ASSERT_NO_FATAL_FAILURE(make_pair(pool, label, low));
  bool created = true;
  auto key = core::AttestationKey::open(pool, label, created);
  ASSERT_TRUE(key) << key.error();
  EXPECT_FALSE(created);
  EXPECT_EQ(pairs_labelled(pool, label), 2u) << "open destroyed a pair it did not make";
  ASSERT_TRUE(key->sign("x"));
  // The one it chose is the low pair: the fleet list (lowest CKA_ID per label) shows the same key.
  auto again = core::AttestationKey::open(pool, label, created);
  ASSERT_TRUE(again);
  EXPECT_EQ(again->key_id(), key->key_id());
  auto listed = core::list_fleet_instances(pool, label.substr(core::kFleetAttestationLabelPrefix.size()));
  ASSERT_TRUE(listed) << listed.error().message;
  bool found = false;
  for (const auto& i : *listed)
    if (std::string(core::kFleetAttestationLabelPrefix) + i.instance == label) {
      found = true;
      EXPECT_EQ(i.key_id, key->key_id());
    }
  EXPECT_TRUE(found);
}

// Private keys labelled exactly label in the shared token (pkcs11-tool, outside any daemon).
int private_keys_labelled(const TokenFiles& token, const std::string& dir, const std::string& label) {
  const std::string out = dir + "/objects.txt";
  if (run("SOFTHSM2_CONF=" + token.conf + " pkcs11-tool --module " + CUSTODY_SOFTHSM_MODULE + " --token-label " + token.label +
          " --login --pin " + token.pin + " --list-objects --type privkey >" + out + " 2>/dev/null") != 0)
    return -1;
  std::istringstream in(read_file(out));
  int n = 0;
  for (std::string line; std::getline(in, line);) {
    const auto at = line.find("label:");
    if (at == std::string::npos) continue;
    const auto value = line.find_first_not_of(' ', at + 6);
    n += value != std::string::npos && line.substr(value) == label;
  }
  return n;
}

// Single-host daemons (each its own SQLite state) sharing one fresh token share the label
// custody:attestation and race to make it. All start; each pair left in the token is one a daemon
// uses (a loser removed its own); and a later daemon on the token starts (before: "more than one
// object matches" for every daemon once the race had left two pairs).
TEST_F(FleetAttestationE2E, SingleHostDaemonsRacingForOneLabelAllStartAndLeaveNoUnusedPair) {
  auto options = [&] {
    DaemonOptions o;
    o.shared_token = token_;
    o.operator_keys_from = shared_.path();
    return o;
  };
  constexpr int kRacers = 3;
  std::vector<std::unique_ptr<Daemon>> racers(kRacers);
  std::vector<std::string> errors(kRacers);
  std::atomic<int> ready{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < kRacers; ++i)
    threads.emplace_back([&, i] {
      const DaemonOptions o = options();
      ++ready;
      while (ready.load() < kRacers) std::this_thread::yield();
      racers[i] = start_member(o, errors[i]);
    });
  for (auto& t : threads) t.join();
  for (const auto& e : errors) ASSERT_EQ(e, "");
  std::set<std::string> in_use;
  for (auto& d : racers) in_use.insert(attest(*d).key_id);
  std::printf("[fleet] %d single-host daemons racing for custody:attestation use %zu key(s)\n", kRacers, in_use.size());
  EXPECT_EQ(private_keys_labelled(token_, shared_.path(), core::kAttestationKeyLabel), static_cast<int>(in_use.size()));
  for (auto& d : racers) ASSERT_EQ(d->terminate(), 0);
  Daemon later(options());
  EXPECT_EQ(in_use.count(attest(later).key_id), 1u) << "a later daemon uses one of the pairs in the token";
}

}  // namespace
