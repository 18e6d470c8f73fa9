#include "daemon/service/router.h"

namespace custody::service {
namespace {

std::vector<std::string> split(std::string_view path) {
  std::vector<std::string> out;
  std::size_t start = 1;  // paths start with '/'
  while (start <= path.size()) {
    auto end = path.find('/', start);
    if (end == std::string_view::npos) end = path.size();
    out.emplace_back(path.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

}  // namespace

Router& Router::add(std::string method, std::string_view pattern, Handler handler, bool audited) {
  Route r{std::move(method), split(pattern), std::move(handler), audited, std::string(pattern)};
  for (auto& s : r.segments)
    if (s.size() > 2 && s.front() == '{' && s.back() == '}') s = "{}";
  routes_.push_back(std::move(r));
  return *this;
}

Router& Router::as(std::string operation, bool batchable) {
  if (!routes_.empty()) {
    routes_.back().operation = std::move(operation);
    routes_.back().batchable = batchable;
  }
  return *this;
}

Router::Match Router::match(std::string_view method, std::string_view path) const {
  Match m;
  if (path.empty() || path.front() != '/') return m;
  const auto segments = split(path);
  for (const auto& r : routes_) {
    if (r.segments.size() != segments.size()) continue;
    std::vector<std::string> params;
    bool same = true;
    for (std::size_t i = 0; i < segments.size() && same; ++i) {
      if (r.segments[i] == "{}") {
        same = !segments[i].empty();
        params.push_back(segments[i]);
      } else {
        same = r.segments[i] == segments[i];
      }
    }
    if (!same) continue;
    if (r.method != method) {
      m.error = core::Code::method_not_allowed;
      continue;
    }
    m.route = &r;
    m.params = std::move(params);
    return m;
  }
  return m;
}

}  // namespace custody::service
