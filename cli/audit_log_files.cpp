#include "cli/audit_log_files.h"

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <system_error>

#include "cli/commands.h"

namespace custody::cli {
namespace fs = std::filesystem;

std::string default_audit_log() {
  const char* env = std::getenv("CUSTODY_AUDIT_LOG");
  return env && *env ? env : kPackagedAuditLog;
}

Expected<std::vector<std::string>, std::string> audit_log_files(const std::string& given) {
  std::error_code ec;
  fs::path live = given;
  if (fs::is_directory(live, ec)) live /= "audit.jsonl";
  const fs::path dir = live.has_parent_path() ? live.parent_path() : fs::path(".");
  const std::string prefix = live.filename().string() + ".";
  std::vector<std::string> rotated;
  fs::directory_iterator it(dir, ec);
  if (ec) return unexpected("cannot list " + dir.string() + ": " + ec.message());
  for (; it != fs::directory_iterator(); it.increment(ec)) {
    if (ec) return unexpected("cannot list " + dir.string() + ": " + ec.message());
    const std::string name = it->path().filename().string();
    if (name.size() != prefix.size() + 12 || name.compare(0, prefix.size(), prefix) != 0) continue;
    if (!std::all_of(name.begin() + static_cast<std::ptrdiff_t>(prefix.size()), name.end(),
                     [](unsigned char c) { return std::isdigit(c); }))
      continue;
    rotated.push_back(it->path().string());
  }
  // Twelve zero-padded digits: the names sort in chain order.
  std::sort(rotated.begin(), rotated.end());
  if (fs::exists(live, ec)) rotated.push_back(live.string());
  if (rotated.empty())
    return unexpected("no audit log at " + live.string() +
                      " (give the live file with --log, e.g. the audit.path of custodyd.yaml, or set CUSTODY_AUDIT_LOG)");
  return rotated;
}

}  // namespace custody::cli
