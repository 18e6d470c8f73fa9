// custodyctl report usage: who used which key, from the audit log (the question an auditor asks:
// who decrypted with this key last quarter). The chain is checked while the files are read, so a
// report never counts from a log that was tampered with unless asked to.
#include <pwd.h>

#include <boost/json.hpp>
#include <chrono>
#include <ctime>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <iterator>
#include <map>
#include <regex>
#include <tuple>

#include "cli/audit_log_files.h"
#include "cli/commands.h"
#include "common/duration.h"
#include "common/pem.h"
#include "daemon/core/audit/audit_verify.h"

namespace custody::cli {
namespace {

namespace json = boost::json;

// Record times are RFC 3339 UTC with microseconds ("2026-12-01T09:30:00.123456Z"): a bound in the
// same form compares as a string.
std::optional<std::string> since_bound(const std::string& text) {
  if (auto d = parse_duration(text)) {
    const auto t = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now() - *d);
    std::tm tm{};
    if (!::gmtime_r(&t, &tm)) return std::nullopt;
    char buf[32];
    if (std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm) == 0) return std::nullopt;
    return std::string(buf) + ".000000Z";
  }
  static const std::regex date(R"((\d{4})-(\d{2})-(\d{2}))");
  static const std::regex date_time(R"((\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})Z)");
  std::smatch m;
  if (std::regex_match(text, m, date)) {
    if (std::stoi(m[2]) < 1 || std::stoi(m[2]) > 12 || std::stoi(m[3]) < 1 || std::stoi(m[3]) > 31) return std::nullopt;
    return text + "T00:00:00.000000Z";
  }
  if (std::regex_match(text, m, date_time)) {
    if (std::stoi(m[2]) < 1 || std::stoi(m[2]) > 12 || std::stoi(m[3]) < 1 || std::stoi(m[3]) > 31 ||
        std::stoi(m[4]) > 23 || std::stoi(m[5]) > 59 || std::stoi(m[6]) > 60)
      return std::nullopt;
    return text.substr(0, text.size() - 1) + ".000000Z";
  }
  return std::nullopt;
}

bool is_data_plane(std::string_view type) {
  return type == "wrap" || type == "unwrap" || type == "datakey" || type == "rewrap" || type == "derive";
}

struct UsageKey {
  std::string key;
  std::optional<std::uint64_t> version;  // refusals before a version was chosen have none
  std::string operation;
  std::uint64_t uid = 0;
  std::string result;
  auto tie() const { return std::tie(key, version, operation, uid, result); }
  bool operator<(const UsageKey& o) const { return tie() < o.tie(); }
};

struct UsageCount {
  std::uint64_t count = 0;
  std::string first, last;  // record times
};

class UsageTally {
 public:
  UsageTally(std::optional<std::string> since, std::vector<std::string> keys)
      : since_(std::move(since)), keys_(std::move(keys)) {}

  void add(const json::object& r) {
    const auto* type = r.if_contains("type");
    const auto* key = r.if_contains("key");
    const auto* time = r.if_contains("time");
    if (!type || !type->is_string() || !is_data_plane(type->as_string())) return;
    if (!key || !key->is_string() || !time || !time->is_string()) return;
    const std::string when(time->as_string());
    if (since_ && when < *since_) return;
    if (!keys_.empty() && std::find(keys_.begin(), keys_.end(), key->as_string()) == keys_.end()) return;
    UsageKey k;
    k.key = std::string(key->as_string());
    k.operation = std::string(type->as_string());
    if (const auto* client = r.if_contains("client"); client && client->is_object())
      if (const auto* uid = client->as_object().if_contains("uid"); uid && uid->is_number()) {
        boost::system::error_code ec;
        k.uid = uid->to_number<std::uint64_t>(ec);
      }
    if (const auto* v = r.if_contains("version"); v && v->is_number()) {
      boost::system::error_code ec;
      k.version = v->to_number<std::uint64_t>(ec);
    }
    // A batch's refusals share one record that counts them per error code.
    if (const auto* errors = r.if_contains("errors"); errors && errors->is_object() && r.contains("refused")) {
      for (const auto& [code, detail] : errors->as_object()) {
        k.result = std::string(code);
        const auto* n = detail.is_object() ? detail.as_object().if_contains("count") : nullptr;
        boost::system::error_code ec;
        count(k, when, n && n->is_number() ? n->to_number<std::uint64_t>(ec) : 1);
      }
      return;
    }
    const auto* result = r.if_contains("result");
    k.result = result && result->is_string() ? std::string(result->as_string()) : "?";
    count(k, when, 1);
  }

  const std::map<UsageKey, UsageCount>& rows() const { return rows_; }

 private:
  void count(const UsageKey& k, const std::string& when, std::uint64_t n) {
    auto& c = rows_[k];
    if (c.count == 0) c.first = when;
    c.count += n;
    c.last = when;
  }
  std::optional<std::string> since_;
  std::vector<std::string> keys_;
  std::map<UsageKey, UsageCount> rows_;
};

std::string uid_text(std::uint64_t uid) {
  std::string text = std::to_string(uid);
  struct passwd pw {}, *found = nullptr;
  char buf[4096];
  if (::getpwuid_r(static_cast<uid_t>(uid), &pw, buf, sizeof buf, &found) == 0 && found)
    text += " (" + std::string(found->pw_name) + ")";
  return text;
}

void print_table(const std::map<UsageKey, UsageCount>& rows) {
  std::vector<std::array<std::string, 8>> lines;
  lines.push_back({"KEY", "VERSION", "OPERATION", "UID", "RESULT", "COUNT", "FIRST", "LAST"});
  for (const auto& [k, c] : rows)
    lines.push_back({k.key, k.version ? std::to_string(*k.version) : "-", k.operation, uid_text(k.uid), k.result,
                     std::to_string(c.count), c.first, c.last});
  std::array<std::size_t, 8> width{};
  for (const auto& l : lines)
    for (std::size_t i = 0; i < l.size(); ++i) width[i] = std::max(width[i], l[i].size());
  for (const auto& l : lines) {
    std::string out;
    for (std::size_t i = 0; i < l.size(); ++i) {
      out += l[i];
      if (i + 1 < l.size()) out += std::string(width[i] - l[i].size() + 2, ' ');
    }
    std::cout << out << '\n';
  }
}

}  // namespace

int cmd_report_usage(const Globals& g, const UsageOptions& o) {
  std::optional<std::string> since;
  if (o.since) {
    since = since_bound(*o.since);
    if (!since) {
      std::cerr << "custodyctl: --since takes a duration (90d, 12h) or a UTC date (2026-10-01 or "
                   "2026-10-01T12:00:00Z), got '"
                << *o.since << "'\n";
      return kUsage;
    }
  }
  std::shared_ptr<EVP_PKEY> key;
  if (!o.public_key_file.empty()) {
    std::ifstream in(o.public_key_file);
    key = read_public_key_pem(std::string((std::istreambuf_iterator<char>(in)), {}));
    if (!key) {
      std::cerr << "custodyctl: " << o.public_key_file << " is not a readable PEM public key\n";
      return kUsage;
    }
  }
  auto files = audit_log_files(o.log);
  if (!files) {
    std::cerr << "custodyctl: " << files.error() << '\n';
    return kUsage;
  }
  core::AuditChainVerifier chain(key);
  UsageTally tally(since, o.keys);
  std::optional<std::string> break_found;
  for (const auto& path : *files) {
    std::ifstream in(path, std::ios::binary);
    if (!in) {
      std::cerr << "custodyctl: cannot read " << path << '\n';
      return kUsage;
    }
    std::string line;
    for (std::uint64_t line_no = 1; !break_found && std::getline(in, line); ++line_no) {
      auto where = path + ":" + std::to_string(line_no) + " (seq " +
                   std::to_string(chain.next_seq() == 0 ? 1 : chain.next_seq()) + "): ";
      if (in.eof()) {
        break_found = where + "the record does not end with a newline (truncated)";
        break;
      }
      auto record = chain.add(line);
      if (!record) {
        break_found = where + record.error();
        break;
      }
      tally.add(*record);
    }
    if (break_found) break;
  }
  if (break_found) {
    if (!o.allow_broken_chain) {
      std::cerr << "custodyctl: the audit chain is broken at " << *break_found
                << "\n  refusing to report from a log that does not verify (custodyctl audit verify names the problem; "
                   "--allow-broken-chain reports the records before the break)\n";
      return kVerifyFailed;
    }
    std::cerr << "custodyctl: warning: the audit chain is broken at " << *break_found
              << "; the report counts only the records before it\n";
  }
  if (g.json) {
    json::array usage;
    for (const auto& [k, c] : tally.rows()) {
      json::object row{{"key", k.key}, {"operation", k.operation}, {"uid", k.uid}, {"result", k.result},
                       {"count", c.count}, {"first", c.first}, {"last", c.last}};
      row["version"] = k.version ? json::value(*k.version) : json::value(nullptr);
      usage.push_back(std::move(row));
    }
    json::array names;
    for (const auto& f : *files) names.emplace_back(f);
    json::object log{{"files", std::move(names)}, {"first_seq", chain.first_seq()}, {"last_seq", chain.last_seq()},
                     {"records", chain.records()}, {"chain_ok", !break_found},
                     {"checkpoints_verified", chain.checkpoints()}};
    if (break_found) log["problem"] = *break_found;
    json::object out{{"log", std::move(log)}, {"usage", std::move(usage)}};
    out["since"] = since ? json::value(*since) : json::value(nullptr);
    std::cout << json::serialize(out) << '\n';
    return kOk;
  }
  std::cout << "audit log: " << files->size() << " file(s), seq " << chain.first_seq() << ".." << chain.last_seq() << ", "
            << (break_found ? "chain BROKEN (see above)" : "chain verified")
            << (key ? ", " + std::to_string(chain.checkpoints()) + " signed checkpoints" : std::string()) << '\n';
  if (since) std::cout << "since " << *since << '\n';
  if (tally.rows().empty()) {
    std::cout << "no data-plane operations recorded" << (since ? " in that period" : "") << '\n';
    return kOk;
  }
  print_table(tally.rows());
  return kOk;
}

}  // namespace custody::cli
