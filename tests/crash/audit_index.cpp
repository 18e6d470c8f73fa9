#include "tests/crash/audit_index.h"

#include <algorithm>
#include <filesystem>
#include <sstream>

#include "tests/support/softhsm_token.h"

namespace custody::crash {
namespace json = boost::json;

std::vector<std::string> audit_files(const std::string& path) {
  const std::filesystem::path current(path);
  const std::string prefix = current.filename().string() + ".";
  std::vector<std::string> rotated;
  for (const auto& entry : std::filesystem::directory_iterator(current.parent_path())) {
    const std::string name = entry.path().filename().string();
    if (name.size() > prefix.size() && name.starts_with(prefix) &&
        std::all_of(name.begin() + static_cast<long>(prefix.size()), name.end(), [](char c) { return c >= '0' && c <= '9'; }))
      rotated.push_back(entry.path().string());
  }
  // The suffix is the zero-padded seq of the file's last record: name order is chain order.
  std::sort(rotated.begin(), rotated.end());
  rotated.push_back(path);
  return rotated;
}

AuditIndex::AuditIndex(const std::string& path) {
  // A rotation while we read would hide records: read until the set of files holds still.
  for (int attempt = 0; attempt < 5; ++attempt) {
    const auto files = audit_files(path);
    records_.clear();
    for (const auto& file : files) {
      std::istringstream in(test::read_file(file));
      for (std::string line; std::getline(in, line);) {
        boost::system::error_code ec;
        auto v = json::parse(line, ec);
        if (!ec && v.is_object()) records_.push_back(std::move(v.as_object()));  // a torn last line is skipped
      }
    }
    if (audit_files(path) == files) break;
  }
  for (std::size_t i = 0; i < records_.size(); ++i) {
    if (const auto* id = records_[i].if_contains("request_id"); id && id->is_string())
      by_request_id_.emplace(std::string(id->as_string()), i);
    if (const auto* id = records_[i].if_contains("admin_request"); id && id->is_string())
      by_admin_request_.emplace(std::string(id->as_string()), i);
  }
}

namespace {
bool is(const json::object& record, const char* field, const std::string& value) {
  const auto* v = record.if_contains(field);
  return v && v->is_string() && v->as_string() == value;
}
}  // namespace

std::size_t AuditIndex::ok_records(const std::string& request_id, const std::string& type) const {
  std::size_t n = 0;
  auto [first, last] = by_request_id_.equal_range(request_id);
  for (auto it = first; it != last; ++it) n += is(records_[it->second], "type", type) && is(records_[it->second], "result", "ok");
  return n;
}

bool AuditIndex::names_admin_request(const std::string& admin_request, const std::string& type,
                                     const std::string& operator_name) const {
  auto [first, last] = by_admin_request_.equal_range(admin_request);
  for (auto it = first; it != last; ++it) {
    const auto& r = records_[it->second];
    if (is(r, "type", type) && is(r, "result", "ok") && (operator_name.empty() || is(r, "operator", operator_name))) return true;
  }
  return false;
}

}  // namespace custody::crash
