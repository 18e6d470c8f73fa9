#pragma once
// A request as the service layer sees it: no sockets, no HTTP library types. The transport fills
// it in; unit tests and fuzzers build it directly.
#include <string>
#include <string_view>

#include "daemon/core/keys/policy.h"
#include "daemon/service/wiping_string.h"

namespace custody::service {

struct Request {
  std::string method;  // "GET", "POST", ...
  std::string target;  // path, without query
  WipingString body;   // the transport moves its read buffer in
  core::Peer peer;
  std::string request_id;
  // Set by the transport when its thread has nothing else to do: the audit records are then
  // written on that thread, if the writer is idle, rather than handed to the writer and back.
  bool audit_on_this_thread = false;
};

struct Response {
  int status = 200;
  WipingString body;  // or taken out with std::move(body).release(): then wiping it is the taker's job
  std::string content_type = "application/json";
};

// The client's X-Request-Id if it is 1..64 printable ASCII characters and not "-" (the id of the
// daemon's own audit records), else a fresh random id. Should the random generator fail, the
// fresh id is made from the clock and a counter instead: the request still needs an id for its
// answer and audit record, and an id has to be unique, not secret. (Whatever the request needs
// randomness for checks the generator itself and fails with its own error.)
std::string choose_request_id(std::string_view from_client);

}  // namespace custody::service
