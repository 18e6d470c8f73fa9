#pragma once
// What the KMS v2 front end needs from the configuration (sockets.kms, kms, limits), handed over
// by main.
#include <chrono>
#include <cstddef>
#include <string>

namespace custody::kms {

struct KmsSettings {
  std::string key;  // the aes-256-gcm key Encrypt uses and Decrypt accepts
  // Status says "ok" only when a wrap and unwrap with the key succeeded at most this long ago.
  std::chrono::milliseconds healthz_interval{10'000};
  // gRPC's receive limit: never more than the service socket takes in one body.
  std::size_t max_message_bytes = 64 * 1024;
  // The longest a call waits for its turn on the token before it is answered UNAVAILABLE.
  std::chrono::milliseconds request_timeout{10'000};
  // A connection without calls for this long is closed (kube-apiserver reconnects).
  std::chrono::milliseconds idle_timeout{60'000};
  unsigned max_connections = 256;
  unsigned max_connections_per_uid = 32;
  unsigned max_in_flight = 128;  // calls served at once; more are refused RESOURCE_EXHAUSTED
};

}  // namespace custody::kms
