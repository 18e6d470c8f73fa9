#pragma once
// The clients that keep a daemon busy until it is killed: data-plane workers on the service
// socket, a rotator and an importer on the admin socket. Each has its own connection, tags every
// request with a unique X-Request-Id and writes what was acknowledged to the ledger. A client
// stops at `stop` or at its first transport error (the daemon is gone); it never retries a
// request, so nothing it sent can reach the restarted daemon.
#include <atomic>
#include <cstdint>
#include <string>

#include "tests/crash/ledger.h"

namespace custody::crash {

struct LoadTarget {
  std::string service_socket;
  std::string admin_socket;
  std::string operator_keys_dir;  // holds alice.key and bob.key
  std::string key;                // the aes-256-gcm key the data plane uses and the rotator rotates
  std::string policy_json;        // for imported keys
};

enum class DataPlaneKind { wrap, batch_wrap, datakey };

void run_data_plane_client(const LoadTarget& target, DataPlaneKind kind, const std::string& id_prefix, std::uint64_t seed,
                           const std::atomic<bool>& stop, Ledger& ledger);

// Proposes rotate-key and approves it as alice then bob, again and again.
void run_rotator(const LoadTarget& target, const std::string& id_prefix, const std::atomic<bool>& stop, Ledger& ledger);

// Imports fresh key bytes into `job` (an import job as the daemon describes it) with the
// public-cloud openssl recipe (files under work_dir), then creates the next job, for
// next_key_name, through dual control.
void run_importer(const LoadTarget& target, const boost::json::object& job, const std::string& next_key_name,
                  const std::string& id_prefix, const std::string& work_dir, const std::atomic<bool>& stop, Ledger& ledger);

}  // namespace custody::crash
