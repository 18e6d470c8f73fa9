#pragma once
// custodyctl xks: what the AWS KMS console needs to connect an external key store to custodyd.
#include <string>

namespace custody::cli {

struct XksCredentialsOptions {
  std::string config_path;    // custodyd's configuration (its xks section)
  std::string access_key_id;  // which credential; empty: the first
  std::string endpoint;       // optional XksProxyUriEndpoint, e.g. https://xks.example.com
};

// Prints the proxy configuration file the KMS console accepts (XksProxyUriPath and
// XksProxyAuthenticationCredential), reading the secret from its file. Exit status as custodyctl's.
int cmd_xks_credentials(const XksCredentialsOptions& o);

}  // namespace custody::cli
