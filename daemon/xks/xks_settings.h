#pragma once
// What the XKS front end is given by main (from the `xks:` configuration section).
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "daemon/core/keys/policy.h"
#include "daemon/xks/secondary_authorization.h"
#include "daemon/xks/sigv4.h"

namespace custody::xks {

// The credentials of the uri_prefix, replaceable while serving (rotation without restart).
class CredentialSet {
 public:
  void replace(std::vector<SigV4Credential> credentials) {
    auto fresh = std::make_shared<const std::vector<SigV4Credential>>(std::move(credentials));
    std::lock_guard lock(mutex_);
    current_ = std::move(fresh);
  }
  std::shared_ptr<const std::vector<SigV4Credential>> current() const {
    std::lock_guard lock(mutex_);
    return current_;
  }

 private:
  mutable std::mutex mutex_;
  std::shared_ptr<const std::vector<SigV4Credential>> current_ = std::make_shared<const std::vector<SigV4Credential>>();
};

struct XksSettings {
  std::string uri_prefix;  // "" or "/segment[/segment...]", no trailing slash
  SigV4Settings sigv4;
  // The identity XKS calls act as: a key's policy rules for it give the key's keyUsage (wrap →
  // ENCRYPT, unwrap → DECRYPT), so usage changes go through dual control like any policy change.
  core::Peer peer;
  std::map<std::string, std::string> keys;  // externalKeyId → custody key name
  std::string health_key;                   // an aes-256-gcm custody key for the deep health check
  std::vector<AuthorizationRule> authorization;  // empty: every authenticated call is allowed
  std::string ping_path = "/ping";          // GET for load balancers, no authentication
  std::chrono::milliseconds health_cache{10'000};  // the spec allows at most 60 s
  std::string proxy_model;  // "custodyd <version>"
  std::string ekm_vendor, ekm_model, ekm_id;  // the token's manufacturer, model and label/serial
  // A fleet member (docs/fleet.md): how many daemons the shared token lists (their attestation
  // keys), for xksProxyFleetSize; nullopt when the token cannot say now. Unset on one host: 1.
  std::function<std::optional<std::size_t>()> fleet_size;
};

}  // namespace custody::xks
