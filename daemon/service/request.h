#pragma once
// A request as the service layer sees it: no sockets, no HTTP library types. The transport fills
// it in; unit tests and fuzzers build it directly.
#include <string>

#include "daemon/core/policy.h"

namespace custody::service {

struct Request {
  std::string method;  // "GET", "POST", ...
  std::string target;  // path, without query
  std::string body;
  core::Peer peer;
  std::string request_id;
};

struct Response {
  int status = 200;
  std::string body;
  std::string content_type = "application/json";
};

// The client's X-Request-Id if it is 1..64 printable ASCII characters, else a fresh random id.
std::string choose_request_id(std::string_view from_client);

}  // namespace custody::service
