// GET /metrics after real load on a real custodyd: the exact counts the load caused, per socket,
// operation and status, per key, per denial reason, the dual-control events; histogram counts
// that match the request counts; a body `promtool check metrics` accepts; and a dashboard whose
// queries use only series the daemon exports.
#include <gtest/gtest.h>

#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>

#include "common/base64.h"
#include "tests/support/daemon_process.h"

using namespace custody;
using namespace custody::test;
namespace json = boost::json;

namespace {


// Each sample line "name{labels} value" → value, keyed by "name{labels}" exactly as printed.
std::map<std::string, double> samples_of(const std::string& body) {
  std::map<std::string, double> out;
  std::istringstream in(body);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line.front() == '#') continue;
    const auto space = line.rfind(' ');
    out[line.substr(0, space)] = std::stod(line.substr(space + 1));
  }
  return out;
}

// The families the body declares (# TYPE lines).
std::set<std::string> families_of(const std::string& body) {
  std::set<std::string> out;
  std::regex re("^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) ");
  std::istringstream in(body);
  std::string line;
  std::smatch m;
  while (std::getline(in, line))
    if (std::regex_search(line, m, re)) out.insert(m[1]);
  return out;
}

double value(const std::map<std::string, double>& samples, const std::string& series) {
  auto it = samples.find(series);
  return it == samples.end() ? -1 : it->second;
}

std::string scrape(client::UnixHttpClient& socket) {
  auto r = socket.call("GET", "/metrics");
  if (!r || r->status != 200) throw std::runtime_error("GET /metrics failed");
  return r->body;
}

// Runs promtool with stdin from a file; its exit status and what it printed.
std::pair<int, std::string> promtool(const std::string& args, const std::string& input_file) {
  const std::string command = "promtool " + args + " < '" + input_file + "' 2>&1";
  FILE* p = ::popen(command.c_str(), "r");
  if (!p) return {-1, "popen failed"};
  std::string out;
  char buf[4096];
  while (std::size_t n = std::fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  const int status = ::pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

bool have_promtool() { return std::system("command -v promtool >/dev/null 2>&1") == 0; }

// A daemon after a known load: 5 wraps, 3 unwraps, one batch wrap of 2 items on "demo"; an unwrap
// refused by policy on "locked"; an unwrap of a key that does not exist; two keys created through
// dual control and one more proposal left pending.
class MetricsAfterLoad : public ::testing::Test {
 protected:
  static constexpr int kWraps = 5;
  static constexpr int kUnwraps = 3;

  void SetUp() override {
    ASSERT_EQ(d_.create_key("demo", "aes-256-gcm", allow_me_everything()), 201);
    ASSERT_EQ(d_.create_key("locked", "aes-256-gcm", R"([{"uid": 4242, "operations": ["unwrap"]}])"), 201);
    std::string blob;
    for (int i = 0; i < kWraps; ++i) {
      auto [status, body] = d_.post("/v1/keys/demo/wrap", {{"plaintext", b64("secret")}});
      ASSERT_EQ(status, 200);
      blob = std::string(body.at("ciphertext").as_string());
    }
    for (int i = 0; i < kUnwraps; ++i) ASSERT_EQ(d_.post("/v1/keys/demo/unwrap", {{"ciphertext", blob}}).first, 200);
    json::array items{json::object{{"plaintext", b64("a")}}, json::object{{"plaintext", b64("b")}}};
    ASSERT_EQ(d_.post("/v1/keys/demo/wrap", {{"batch", items}}).first, 200);
    ASSERT_EQ(d_.post("/v1/keys/locked/unwrap", {{"ciphertext", blob}}).first, 403);
    ASSERT_EQ(d_.post("/v1/keys/ghost/unwrap", {{"ciphertext", blob}}).first, 403);
    auto proposed = d_.admin().call(
        "POST", "/v1/admin/requests",
        json::serialize(json::value{{"operation", "rotate-key"}, {"params", {{"name", "demo"}}}}));
    ASSERT_TRUE(proposed);
    ASSERT_EQ(proposed->status, 201) << proposed->body;
    body_ = scrape(d_.service());
    samples_ = samples_of(body_);
  }

  Daemon d_;
  std::string body_;
  std::map<std::string, double> samples_;
};

TEST_F(MetricsAfterLoad, CountsEachRequestBySocketOperationAndStatus) {
  EXPECT_EQ(value(samples_, R"(custody_requests_total{socket="service",operation="wrap",code="200"})"), kWraps) << body_;
  EXPECT_EQ(value(samples_, R"(custody_requests_total{socket="service",operation="unwrap",code="200"})"), kUnwraps);
  EXPECT_EQ(value(samples_, R"(custody_requests_total{socket="service",operation="unwrap",code="403"})"), 2);
  EXPECT_EQ(value(samples_, R"(custody_requests_total{socket="service",operation="wrap.batch",code="200"})"), 1);
  // Two create-key proposals and the rotate-key one; four approvals.
  EXPECT_EQ(value(samples_, R"(custody_requests_total{socket="admin",operation="admin.propose",code="201"})"), 3);
  EXPECT_EQ(value(samples_, R"(custody_requests_total{socket="admin",operation="admin.approve",code="200"})"), 4);
  // The raw path never becomes a label.
  EXPECT_EQ(body_.find("/v1/keys"), std::string::npos);
}

TEST_F(MetricsAfterLoad, HistogramCountsEqualRequestCounts) {
  for (const auto& [op, n] : {std::pair<std::string, int>{"wrap", kWraps}, {"unwrap", kUnwraps + 2}, {"wrap.batch", 1}}) {
    const std::string labels = R"({socket="service",operation=")" + op + R"("})";
    EXPECT_EQ(value(samples_, "custody_request_duration_seconds_count" + labels), n) << op;
    const std::string inf = R"({socket="service",operation=")" + op + R"(",le="+Inf"})";
    EXPECT_EQ(value(samples_, "custody_request_duration_seconds_bucket" + inf), n) << op;
    EXPECT_GT(value(samples_, "custody_request_duration_seconds_sum" + labels), 0) << op;
  }
  // Every request wrote audit records, each group synced at least once.
  EXPECT_GE(value(samples_, "custody_audit_fsync_duration_seconds_count"), 1);
  EXPECT_EQ(value(samples_, R"(custody_audit_fsync_duration_seconds_bucket{le="+Inf"})"),
            value(samples_, "custody_audit_fsync_duration_seconds_count"));
  EXPECT_GE(value(samples_, "custody_audit_last_checkpoint_age_seconds"), 0);
}

TEST_F(MetricsAfterLoad, CountsPerKeyAndDenialsByKeyAndReason) {
  EXPECT_EQ(value(samples_, R"(custody_key_operations_total{key="demo",operation="wrap",result="ok"})"), kWraps + 2);
  EXPECT_EQ(value(samples_, R"(custody_key_operations_total{key="demo",operation="unwrap",result="ok"})"), kUnwraps);
  EXPECT_EQ(value(samples_, R"(custody_key_operations_total{key="locked",operation="unwrap",result="permission_denied"})"), 1);
  EXPECT_EQ(value(samples_, R"(custody_denials_total{key="locked",reason="policy"})"), 1) << body_;
  // A name the registry does not know is the caller's choice: it never becomes a label.
  EXPECT_EQ(value(samples_, R"(custody_denials_total{key="_unknown",reason="unknown_key"})"), 1);
  EXPECT_EQ(body_.find("ghost"), std::string::npos);
}

TEST_F(MetricsAfterLoad, CountsDualControlEventsAndNoUnauditedChange) {
  EXPECT_EQ(value(samples_, R"(custody_admin_requests_total{event="proposed"})"), 3);
  EXPECT_EQ(value(samples_, R"(custody_admin_requests_total{event="approved"})"), 4);
  EXPECT_EQ(value(samples_, R"(custody_admin_requests_total{event="executed"})"), 2);
  EXPECT_EQ(value(samples_, R"(custody_admin_requests_total{event="failed"})"), 0);
  EXPECT_EQ(value(samples_, "custody_admin_requests_pending"), 1);
  EXPECT_EQ(value(samples_, "custody_admin_changes_unaudited_total"), 0);
  EXPECT_EQ(value(samples_, "custody_keys"), 2);
  EXPECT_EQ(value(samples_, "custody_keys_rotation_overdue"), 0);
  EXPECT_EQ(value(samples_, "custody_pending_destructions"), 0);
}

TEST_F(MetricsAfterLoad, TheAdminSocketServesTheSameFamilies) {
  EXPECT_EQ(families_of(scrape(d_.admin())), families_of(body_));
}

// Needs the daemon to hand its session pool to the service context (ServiceContext::pool).
TEST_F(MetricsAfterLoad, ShowsTheTokenSessionPoolAndCallLatency) {
  EXPECT_EQ(value(samples_, "custody_token_available"), 1);
  EXPECT_EQ(value(samples_, "custody_token_sessions_max"), 2) << body_;
  EXPECT_EQ(value(samples_, "custody_token_resets_total"), 0);
  // At least one token call per wrap, batch item and unwrap.
  EXPECT_GE(value(samples_, "custody_token_call_duration_seconds_count"), kWraps + 2 + kUnwraps);
}

TEST_F(MetricsAfterLoad, PromtoolAcceptsTheExposition) {
  if (!have_promtool())
    GTEST_SKIP() << "\n\n*** promtool NOT FOUND: `promtool check metrics` was NOT run. Install the Debian package "
                    "'prometheus' (scripts/bootstrap does). ***\n";
  const std::string file = d_.dir() + "/metrics.txt";
  std::ofstream(file) << body_;
  auto [status, out] = promtool("check metrics", file);
  EXPECT_EQ(status, 0) << out << "\n" << body_;
  EXPECT_EQ(out, "") << "promtool lint findings:\n" << out;
}

// Every metric a dashboard query names is one the daemon exports (a histogram's _bucket, _sum and
// _count belong to its family).
TEST_F(MetricsAfterLoad, TheDashboardQueriesOnlyExportedSeries) {
  std::ifstream in(std::string(CUSTODY_SOURCE_DIR) + "/packaging/grafana/custody-dashboard.json");
  ASSERT_TRUE(in) << "packaging/grafana/custody-dashboard.json is missing";
  std::stringstream text;
  text << in.rdbuf();
  boost::system::error_code ec;
  auto dashboard = json::parse(text.str(), ec);
  ASSERT_FALSE(ec) << "the dashboard is not valid JSON: " << ec.message();
  const auto families = families_of(body_);
  std::set<std::string> rows;
  std::size_t exprs = 0;
  for (const auto& panel : dashboard.at("panels").as_array()) {
    if (panel.at("type").as_string() == "row") rows.insert(std::string(panel.at("title").as_string()));
    const auto* targets = panel.as_object().if_contains("targets");
    if (!targets) continue;
    for (const auto& t : targets->as_array()) {
      const std::string expr(t.at("expr").as_string());
      ++exprs;
      std::regex name_re("custody_[a-z0-9_]+");
      for (std::sregex_iterator it(expr.begin(), expr.end(), name_re), end; it != end; ++it) {
        std::string name = it->str();
        for (const char* suffix : {"_bucket", "_sum", "_count"}) {
          const std::string s(suffix);
          if (!families.count(name) && name.size() > s.size() && name.ends_with(s)) name.resize(name.size() - s.size());
        }
        EXPECT_TRUE(families.count(name)) << "the dashboard queries " << it->str() << ", which /metrics does not export ("
                                          << expr << ")";
      }
    }
  }
  EXPECT_GE(exprs, 10u);
  for (const char* row : {"Overview", "On-call", "Debug"}) EXPECT_TRUE(rows.count(row)) << "no row " << row;
}

// An admin change whose admin.execute record cannot be written: the daemon may write no more
// than the approval that completes the quorum (a file size limit set on the running daemon), so
// the change runs, its record fails, the approval answers 503, and
// custody_admin_changes_unaudited_total counts it.
TEST(MetricsE2E, CountsAnAdminChangeWhoseAuditRecordFailed) {
  Daemon d;
  auto proposed = d.admin().call(
      "POST", "/v1/admin/requests",
      json::serialize(json::value{{"operation", "create-key"},
                                  {"params", {{"name", "k9"}, {"algorithm", "aes-256-gcm"}, {"policy", json::array{}}}}}));
  ASSERT_TRUE(proposed);
  ASSERT_EQ(proposed->status, 201) << proposed->body;
  const std::string id(json::parse(proposed->body).at("request").at("id").as_string());
  ASSERT_EQ(d.approve(id, "alice").first, 200);
  // The limit below holds for every file the daemon writes: the audit log is made the largest
  // of them first, so that only the audit log can reach it.
  const auto file_size = [](const std::string& path) {
    std::error_code ec;
    auto n = std::filesystem::file_size(path, ec);
    return ec ? std::uintmax_t{0} : n;
  };
  const std::uintmax_t others = file_size(d.dir() + "/state.db") + file_size(d.dir() + "/state.db-wal");
  while (file_size(d.audit_path()) < others + (512u << 10)) ASSERT_EQ(d.service().call("GET", "/v1/keys")->status, 200);
  // Daemon::approve shows the request, then approves: bob's two records are about as long as
  // alice's (operator name, signature and state differ by a few bytes); the admin.execute record
  // after them is far longer than the slack.
  std::ifstream in(d.audit_path(), std::ios::binary);
  const std::string log((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::size_t show_bytes = 0, approve_bytes = 0;
  for (std::size_t start = 0, end; (end = log.find('\n', start)) != std::string::npos; start = end + 1) {
    const std::string_view line(log.data() + start, end - start + 1);
    if (line.find(R"("type":"admin.show-request")") != std::string_view::npos) show_bytes = line.size();
    if (line.find(R"("type":"admin.approve")") != std::string_view::npos) approve_bytes = line.size();
  }
  ASSERT_GT(show_bytes, 0u);
  ASSERT_GT(approve_bytes, 0u);
  const rlim_t limit = log.size() + show_bytes + approve_bytes + 60;
  struct rlimit tight{limit, RLIM_INFINITY};  // the hard limit stays, so the soft one can be lifted again
  ASSERT_EQ(::prlimit(d.pid(), RLIMIT_FSIZE, &tight, nullptr), 0);
  const auto second = d.approve(id, "bob");
  struct rlimit unlimited{RLIM_INFINITY, RLIM_INFINITY};
  const auto body = scrape(d.admin());
  ASSERT_EQ(::prlimit(d.pid(), RLIMIT_FSIZE, &unlimited, nullptr), 0);
  ASSERT_EQ(second.first, 503) << json::serialize(second.second);
  const auto samples = samples_of(body);
  EXPECT_EQ(value(samples, "custody_admin_changes_unaudited_total"), 1) << json::serialize(second.second) << "\n" << d.log();
  EXPECT_EQ(value(samples, R"(custody_requests_total{socket="admin",operation="admin.approve",code="503"})"), 1);
  EXPECT_EQ(value(samples, R"(custody_admin_requests_total{event="executed"})"), 0);
  for (const auto& rec : d.audit_records())
    EXPECT_FALSE(rec.at("type").as_string() == "admin.execute") << "the execute record was written after all";
}

}  // namespace
