#pragma once
// What a listener hands its requests to. The Unix sockets hand them to a service::Service (the
// CONTRACT API); the TCP listener to a front end with its own protocol (daemon/xks). Both get the
// same framing, limits, budgets and timeouts from the Server; only the handling differs.
#include <functional>
#include <string>
#include <vector>

#include "daemon/core/error.h"
#include "daemon/service/call.h"
#include "daemon/service/request.h"
#include "daemon/service/service.h"
#include "daemon/transport/http_request_parser.h"

namespace custody::transport {

// What the transport knows about a request beyond service::Request: for network listeners.
struct Origin {
  std::string address;              // "ip:port" of the peer; empty on a Unix socket
  std::string tls_client_subject;   // the verified client certificate's subject (mTLS), else empty
  std::string raw_target;           // the request target as sent, query included
  const std::vector<HttpField>* fields = nullptr;  // kept header fields (HttpLimits::keep_fields)
};

class Endpoint {
 public:
  using Done = std::function<void(service::Response)>;
  virtual ~Endpoint() = default;
  // May call done on another thread.
  virtual void handle(const service::Request& request, const Origin& origin, Done done) = 0;
  // A request refused before it reached a route (malformed, too large, over a limit).
  virtual void refuse(const service::Request& request, const Origin& origin, const core::Error& error, Done done) = 0;
  // The answer to a connection turned away at its budget, before any request was read: written
  // at once, not audited (a flood must not fill the log).
  virtual service::Response connection_refused(const core::Error& error, const std::string& request_id) = 0;
};

// The Unix sockets' endpoint: the CONTRACT service.
class ServiceEndpoint final : public Endpoint {
 public:
  explicit ServiceEndpoint(service::Service& service) : service_(service) {}
  void handle(const service::Request& request, const Origin&, Done done) override {
    service_.handle(request, std::move(done));
  }
  void refuse(const service::Request& request, const Origin&, const core::Error& error, Done done) override {
    service_.refuse(request, error, std::move(done));
  }
  service::Response connection_refused(const core::Error& error, const std::string& request_id) override {
    return service::error_response(error, request_id);
  }

 private:
  service::Service& service_;
};

}  // namespace custody::transport
