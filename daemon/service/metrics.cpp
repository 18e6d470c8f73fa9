#include "daemon/service/metrics.h"

#include <algorithm>
#include <charconv>
#include <map>
#include <vector>

namespace custody::service {
namespace {

// Label values escape backslash, double quote and newline; HELP text backslash and newline.
void append_escaped(std::string& out, std::string_view value, bool quote) {
  for (char ch : value) {
    if (ch == '\\') out += "\\\\";
    else if (ch == '\n') out += "\\n";
    else if (ch == '"' && quote) out += "\\\"";
    else out += ch;
  }
}

template <class T>
void append_number(std::string& out, T value) {
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, value);
  if (ec == std::errc()) out.append(buf, end);
  else out += "NaN";
}

const char* result_name(std::size_t index) {
  return index == 0 ? "ok" : core::code_name(static_cast<core::Code>(index - 1));
}

}  // namespace

void Exposition::family(std::string_view name, std::string_view type, std::string_view help) {
  out_ += "# HELP ";
  out_ += name;
  out_ += ' ';
  append_escaped(out_, help, false);
  out_ += "\n# TYPE ";
  out_ += name;
  out_ += ' ';
  out_ += type;
  out_ += '\n';
}

void Exposition::series(std::string_view name, Labels labels, std::string_view extra_name, std::string_view extra_value) {
  out_ += name;
  if (labels.size() == 0 && extra_name.empty()) return;
  out_ += '{';
  bool first = true;
  auto label = [&](std::string_view k, std::string_view v) {
    if (!first) out_ += ',';
    first = false;
    out_ += k;
    out_ += "=\"";
    append_escaped(out_, v, true);
    out_ += '"';
  };
  for (const auto& [k, v] : labels) label(k, v);
  if (!extra_name.empty()) label(extra_name, extra_value);
  out_ += '}';
}

void Exposition::sample(std::string_view name, Labels labels, std::uint64_t value) {
  series(name, labels);
  out_ += ' ';
  append_number(out_, value);
  out_ += '\n';
}

void Exposition::sample(std::string_view name, Labels labels, std::int64_t value) {
  series(name, labels);
  out_ += ' ';
  append_number(out_, value);
  out_ += '\n';
}

void Exposition::sample(std::string_view name, Labels labels, double value) {
  series(name, labels);
  out_ += ' ';
  append_number(out_, value);
  out_ += '\n';
}

void Exposition::histogram(std::string_view name, Labels labels, const LatencyHistogram::Snapshot& h) {
  const std::string bucket = std::string(name) + "_bucket";
  for (std::size_t i = 0; i < h.cumulative.size(); ++i) {
    const bool last = i + 1 == h.cumulative.size();
    series(bucket, labels, "le", last ? "+Inf" : LatencyHistogram::kBoundLabels[i]);
    out_ += ' ';
    append_number(out_, h.cumulative[i]);
    out_ += '\n';
  }
  series(std::string(name) + "_sum", labels);
  out_ += ' ';
  append_number(out_, h.sum_seconds);
  out_ += "\n";
  series(std::string(name) + "_count", labels);
  out_ += ' ';
  append_number(out_, h.count());
  out_ += '\n';
}

void Metrics::count_response(int status) {
  std::size_t c = static_cast<std::size_t>(status / 100);
  if (c < responses_.size()) responses_[c].fetch_add(1, std::memory_order_relaxed);
}

RequestSeries& Metrics::request_series(std::string_view socket, std::string_view operation) {
  std::lock_guard lock(requests_mutex_);
  for (auto& s : requests_)
    if (s.socket == socket && s.operation == operation) return s;
  auto& s = requests_.emplace_back();
  s.socket = socket;
  s.operation = operation;
  return s;
}

KeySeries* Metrics::find_key(const std::string& key) {
  std::shared_lock lock(keys_mutex_);
  auto it = keys_.find(key);
  return it == keys_.end() ? nullptr : it->second.get();
}

KeySeries& Metrics::key(const std::string& key) {
  std::unique_lock lock(keys_mutex_);
  if (auto it = keys_.find(key); it != keys_.end()) return *it->second;
  if (keys_.size() >= kMaxKeyLabels) return other_keys_;
  return *(keys_[key] = std::make_unique<KeySeries>());
}

void Metrics::expose_requests(Exposition& out) const {
  std::lock_guard lock(requests_mutex_);
  out.family("custody_requests_total", "counter",
             "Requests answered, by socket, route operation and HTTP status (the status actually sent).");
  for (const auto& s : requests_) {
    for (int status = 0; status < RequestSeries::kStatuses; ++status) {
      const auto n = s.by_status[static_cast<std::size_t>(status)].load(std::memory_order_relaxed);
      if (n == 0) continue;
      const std::string code = std::to_string(status);
      out.sample("custody_requests_total", {{"socket", s.socket}, {"operation", s.operation}, {"code", code}}, n);
    }
  }
  out.family("custody_request_duration_seconds", "histogram",
             "Time from a request's arrival at its route to its response, audit write included.");
  for (const auto& s : requests_) {
    const auto h = s.duration.snapshot();
    if (h.count() == 0) continue;
    out.histogram("custody_request_duration_seconds", {{"socket", s.socket}, {"operation", s.operation}}, h);
  }
}

void Metrics::expose_keys(Exposition& out) const {
  std::shared_lock lock(keys_mutex_);
  // Sorted, so a scrape reads the same from one time to the next.
  std::vector<std::pair<std::string_view, const KeySeries*>> keys;
  for (const auto& [name, series] : keys_) keys.emplace_back(name, series.get());
  std::sort(keys.begin(), keys.end());
  keys.emplace_back("_other", &other_keys_);
  out.family("custody_key_operations_total", "counter",
             "Data-plane operations on each key, by result (ok or the error code).");
  for (const auto& [name, series] : keys) {
    for (std::size_t op = 0; op < KeySeries::kOperations; ++op) {
      for (std::size_t r = 0; r < KeySeries::kResults; ++r) {
        const auto n = series->operations[op][r].load(std::memory_order_relaxed);
        if (n == 0) continue;
        out.sample("custody_key_operations_total",
                   {{"key", name}, {"operation", core::operation_name(static_cast<core::Operation>(op))}, {"result", result_name(r)}},
                   n);
      }
    }
  }
  out.family("custody_denials_total", "counter", "Data-plane requests refused on a key, by reason.");
  for (const auto& [name, series] : keys) {
    for (std::size_t d = 0; d < std::size(kDenialNames); ++d) {
      const auto n = series->denials[d].load(std::memory_order_relaxed);
      if (n == 0) continue;
      out.sample("custody_denials_total", {{"key", name}, {"reason", kDenialNames[d]}}, n);
    }
  }
  // With the keys: whether they could be restored is part of their health.
  out.single("custody_recovery_drill_last_success_timestamp", "gauge",
             "Unix time of the last recovery drill that passed (0: none since start).",
             recovery_drill_last_success_.load(std::memory_order_relaxed));
}

}  // namespace custody::service
