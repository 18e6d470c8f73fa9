// JSON request decoding per route: the real service and admin route tables (service::Service,
// as custodyd serves them) over a real SoftHSMv2 token, with keys, admin requests and import
// jobs made at start. Input: byte 0 picks the route, byte 1 the peer uid and the path
// parameter, the rest is the body. The last route takes "METHOD target" from the first line of
// the body, for the router itself. Every answer must be a non-500 with valid JSON, and a >= 400
// must be the contract's error shape carrying the request id.
#include <algorithm>
#include <boost/json.hpp>
#include <cstdint>
#include <string>
#include <string_view>

#include "tests/fuzz/daemon_harness.h"

using namespace custody;

namespace {

struct RouteSpec {
  bool admin;
  const char* method;
  const char* pattern;  // "{k}" a key name, "{r}" an admin request id, "{j}" an import job id
};

constexpr RouteSpec kRoutes[] = {
    {false, "POST", "/v1/keys/{k}/wrap"},
    {false, "POST", "/v1/keys/{k}/unwrap"},
    {false, "POST", "/v1/keys/{k}/datakey"},
    {false, "POST", "/v1/keys/{k}/rewrap"},
    {false, "POST", "/v1/keys/{k}/derive"},
    {false, "GET", "/v1/keys"},
    {false, "GET", "/v1/keys/{k}"},
    {false, "POST", "/v1/attestation"},
    {false, "GET", "/v1/health"},
    {false, "GET", "/metrics"},
    {true, "POST", "/v1/admin/requests"},
    {true, "GET", "/v1/admin/requests/{r}"},
    {true, "POST", "/v1/admin/requests/{r}/approvals"},
    {true, "POST", "/v1/admin/requests/{r}/cancel"},
    {true, "POST", "/v1/admin/keys/check"},
    {true, "GET", "/v1/admin/import-jobs"},
    {true, "GET", "/v1/admin/import-jobs/{j}"},
    {true, "POST", "/v1/admin/import-jobs/{j}/import"},
    {true, "GET", "/v1/keys"},
    {true, "GET", "/v1/keys/{k}"},
    {true, "POST", "/v1/attestation"},
    {true, "GET", "/v1/health"},
    {true, "GET", "/v1/admin/requests"},
    {false, nullptr, nullptr},  // method and target from the body's first line
};
constexpr std::size_t kRouteCount = sizeof kRoutes / sizeof kRoutes[0];

std::string fill(std::string_view pattern, const std::string& value) {
  std::string out(pattern);
  if (auto at = out.find('{'); at != std::string::npos) out.replace(at, 3, value);
  return out;
}

const std::string& pick(const std::vector<std::string>& from, std::uint8_t selector) {
  return from[selector % from.size()];
}

void check_response(const service::Request& request, const service::Response& response) {
  const std::string body(response.body.view());
  const std::string where = request.method + " " + request.target + " -> " + std::to_string(response.status) + ": ";
  fuzz::check(response.status != 500, where + "500 for " + body);
  fuzz::check(response.status >= 200 && response.status <= 599, where + "not an HTTP status");
  if (response.content_type != "application/json") {
    fuzz::check(response.status < 400, where + "an error that is not JSON");
    return;
  }
  boost::system::error_code ec;
  auto v = boost::json::parse(body, ec);
  fuzz::check(!ec, where + "body is not JSON: " + body);
  if (response.status < 400) return;
  // CONTRACT: {"error": {"code", "message", "request_id"}} and nothing else.
  fuzz::check(v.is_object() && v.as_object().size() == 1 && v.as_object().contains("error"),
              where + "not the error shape: " + body);
  const auto* e = v.as_object().at("error").if_object();
  fuzz::check(e && e->size() == 3, where + "error has other members: " + body);
  for (const char* member : {"code", "message", "request_id"})
    fuzz::check(e->contains(member) && e->at(member).is_string(), where + "error." + member + " missing: " + body);
  fuzz::check(e->at("request_id").as_string() == request.request_id, where + "wrong request_id: " + body);
  fuzz::check(!e->at("code").as_string().empty() && e->at("code").as_string() != "internal",
              where + "internal error: " + body);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  fuzz::DaemonHarness::get();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  auto& h = fuzz::DaemonHarness::get();
  const RouteSpec& route = kRoutes[data[0] % kRouteCount];
  const std::uint8_t who = data[1];
  std::string body(reinterpret_cast<const char*>(data + 2), size - 2);

  service::Request request;
  request.request_id = "fuzz-request";
  const uid_t uid = fuzz::kPeerUids[who & 3];
  request.peer = core::Peer{uid, uid, 4242};
  bool admin = route.admin;
  if (route.method) {
    request.method = route.method;
    const std::string_view pattern = route.pattern;
    const std::uint8_t param = who >> 2;
    if (pattern.find("{k}") != std::string_view::npos) request.target = fill(pattern, pick(h.key_names, param));
    else if (pattern.find("{r}") != std::string_view::npos) request.target = fill(pattern, pick(h.request_ids, param));
    else if (pattern.find("{j}") != std::string_view::npos) request.target = fill(pattern, pick(h.job_ids, param));
    else request.target = std::string(pattern);
  } else {
    admin = (who & 4) != 0;
    const auto line_end = body.find('\n');
    const std::string line = body.substr(0, line_end);
    body = line_end == std::string::npos ? "" : body.substr(line_end + 1);
    const auto space = line.find(' ');
    request.method = line.substr(0, space);
    request.target = space == std::string::npos ? "" : line.substr(space + 1);
    // What the transport hands over: a method of HTTP token characters and a target of printable
    // ASCII (HttpRequestParser refuses the rest with 400 before any route sees it).
    auto printable = [](const std::string& s) {
      return std::all_of(s.begin(), s.end(), [](char c) { return c > 0x20 && c < 0x7f; });
    };
    if (!printable(request.method) || !printable(request.target)) return 0;
  }
  request.body = std::move(body);
  check_response(request, h.handle(admin, request));
  return 0;
}
