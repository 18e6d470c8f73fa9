#include "bench/report.h"

#include <cstdio>

namespace custody::bench {

void print_progress(const Row& row) {
  std::fprintf(stderr, "  %-16s %-28s %9.0f ops/s  p50 %7.1f us  p99 %7.1f us%s%s\n", row.section.c_str(), row.name.c_str(),
               row.ops_per_second, row.latency.p50_us, row.latency.p99_us, row.errors ? "  ERRORS: " : "",
               row.errors ? row.note.c_str() : "");
}

void Report::add(Row row) { rows_.push_back(std::move(row)); }

const Row* Report::find(const std::string& section, const std::string& name) const {
  for (const auto& r : rows_)
    if (r.section == section && r.name == name) return &r;
  return nullptr;
}

std::optional<double> Report::figure(const std::string& name) const {
  auto it = figures_.find(name);
  if (it == figures_.end()) return std::nullopt;
  return it->second;
}

void Report::add_missing(const std::string& section, const std::string& reason) {
  missing_.push_back(section + ": " + reason);
}

namespace {

std::string fixed(double v, int decimals) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf;
}

std::string remarks(const Row& r) {
  std::string s;
  if (r.errors) s = std::to_string(r.errors) + " ERRORS";
  if (!r.note.empty()) s += (s.empty() ? "" : "; ") + r.note;
  return s;
}

}  // namespace

void Report::print_table(bool markdown) const {
  const char* header[] = {"section", "row", "ops/s", "p50 µs", "p99 µs", "p99.9 µs", "ctx sw/req", "RSS MiB", "notes"};
  if (markdown) {
    std::printf("|");
    for (const char* h : header) std::printf(" %s |", h);
    std::printf("\n|---|---|--:|--:|--:|--:|--:|--:|---|\n");
  } else {
    std::printf("%-16s %-28s %11s %9s %9s %9s %10s %8s  %s\n", header[0], header[1], header[2], "p50 us", "p99 us",
                "p99.9 us", header[6], header[7], header[8]);
  }
  for (const auto& r : rows_) {
    const std::string ctx = r.context_switches_per_request ? fixed(*r.context_switches_per_request, 2) : "";
    const std::string rss = r.rss_mib ? fixed(*r.rss_mib, 1) : "";
    const std::string note = remarks(r);
    if (markdown)
      std::printf("| %s | %s | %.0f | %.1f | %.1f | %.1f | %s | %s | %s |\n", r.section.c_str(), r.name.c_str(),
                  r.ops_per_second, r.latency.p50_us, r.latency.p99_us, r.latency.p999_us, ctx.c_str(), rss.c_str(),
                  note.c_str());
    else
      std::printf("%-16s %-28s %11.0f %9.1f %9.1f %9.1f %10s %8s  %s\n", r.section.c_str(), r.name.c_str(),
                  r.ops_per_second, r.latency.p50_us, r.latency.p99_us, r.latency.p999_us, ctx.c_str(), rss.c_str(),
                  note.c_str());
  }
  for (const auto& m : missing_) std::printf(markdown ? "\nMissing: %s\n" : "missing  %s\n", m.c_str());
}

}  // namespace custody::bench
