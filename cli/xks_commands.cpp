#include "cli/xks_commands.h"

#include <boost/json.hpp>
#include <iostream>

#include "cli/commands.h"
#include "config/config.h"
#include "daemon/xks/secret_file.h"

namespace custody::cli {

int cmd_xks_credentials(const XksCredentialsOptions& o) {
  auto loaded = config::load_config(o.config_path);
  if (!loaded) {
    for (const auto& e : loaded.error()) std::cerr << e.format(o.config_path) << '\n';
    return kUsage;
  }
  if (!loaded->xks) {
    std::cerr << "custodyctl: " << o.config_path << " has no xks section: the XKS listener is off\n";
    return kUsage;
  }
  const auto& x = *loaded->xks;
  const config::XksCredential* chosen = nullptr;
  for (const auto& c : x.credentials)
    if (o.access_key_id.empty() ? !chosen : c.access_key_id == o.access_key_id) chosen = &c;
  if (!chosen) {
    std::cerr << "custodyctl: no credential " << o.access_key_id << " in xks.credentials of " << o.config_path << '\n';
    return kUsage;
  }
  auto secret = xks::read_secret(chosen->secret_file, chosen->systemd_credential);
  if (!secret) {
    std::cerr << "custodyctl: " << secret.error() << '\n';
    return kUsage;
  }
  boost::json::object out;
  if (!o.endpoint.empty()) out["XksProxyUriEndpoint"] = o.endpoint;
  out["XksProxyUriPath"] = x.uri_prefix + "/kms/xks/v1";
  out["XksProxyAuthenticationCredential"] = {
      {"AccessKeyId", chosen->access_key_id},
      {"RawSecretAccessKey", std::string(secret->begin(), secret->end())}};
  std::cout << boost::json::serialize(out) << '\n';
  return kOk;
}

}  // namespace custody::cli
