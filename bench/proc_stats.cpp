#include "bench/proc_stats.h"

#include <dirent.h>

#include <cstdio>
#include <cstring>
#include <string>

namespace custody::bench {

namespace {

// The numeric value of each status line starting with one of the names, summed.
std::optional<std::uint64_t> sum_status_fields(const std::string& path, std::initializer_list<const char*> names) {
  std::FILE* f = std::fopen(path.c_str(), "re");
  if (!f) return std::nullopt;
  char line[256];
  std::uint64_t sum = 0;
  unsigned found = 0;
  while (std::fgets(line, sizeof line, f)) {
    for (const char* name : names) {
      const std::size_t n = std::strlen(name);
      if (std::strncmp(line, name, n) == 0 && line[n] == ':') {
        sum += std::strtoull(line + n + 1, nullptr, 10);
        ++found;
      }
    }
  }
  std::fclose(f);
  if (found != names.size()) return std::nullopt;
  return sum;
}

}  // namespace

std::optional<std::uint64_t> context_switches(pid_t pid) {
  const std::string tasks = "/proc/" + std::to_string(pid) + "/task";
  DIR* dir = ::opendir(tasks.c_str());
  if (!dir) return std::nullopt;
  std::uint64_t total = 0;
  bool any = false;
  while (const dirent* entry = ::readdir(dir)) {
    if (entry->d_name[0] == '.') continue;
    // A thread may end between readdir and the read: it simply drops out of the sum.
    if (auto n = sum_status_fields(tasks + "/" + entry->d_name + "/status",
                                   {"voluntary_ctxt_switches", "nonvoluntary_ctxt_switches"})) {
      total += *n;
      any = true;
    }
  }
  ::closedir(dir);
  if (!any) return std::nullopt;
  return total;
}

std::optional<double> resident_mib(pid_t pid) {
  auto kib = sum_status_fields("/proc/" + std::to_string(pid) + "/status", {"VmRSS"});
  if (!kib) return std::nullopt;
  return static_cast<double>(*kib) / 1024.0;
}

}  // namespace custody::bench
