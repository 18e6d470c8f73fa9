#pragma once
// Durable state in PostgreSQL, for a fleet of daemons sharing one network HSM partition. The same
// public methods, types and semantics as StateStore (SQLite), so both can sit behind one interface:
// every read is all or nothing (an error naming the table, never a shorter list), every change is
// acknowledged only after its transaction commits, errors are Code::unavailable, and the store
// remembers whether its latest call failed, for health.
//
// What the fleet adds, on top of StateStore's methods:
// - reserve_encryptions: a block of the usage count taken in one statement under the row lock, so
//   the limit holds across every daemon;
// - intents and requests past their quorum carry their owner (the daemon's host id), and a daemon
//   holds its member lease from its first intent or quorum on: recovery at start takes a daemon's
//   own work and that of members that are gone, never a live member's change in flight. A change
//   whose intent another daemon's recovery took (the owner lost its connection meanwhile) fails
//   instead of committing;
// - leases (session advisory locks) for scheduled work, released by the server when the holder's
//   connection ends, so another daemon takes over when one dies;
// - every committed change to keys, admin requests and import jobs is announced on the
//   kChangeChannel (NOTIFY, delivered at commit); PgChangeFeed waits for those announcements.
//
// One connection, used under a mutex. A dropped connection is an error for the call that meets
// it; the next call reconnects (leases held on the old connection are gone: holds_lease says so).
#include <atomic>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "daemon/core/keys/key.h"
#include "daemon/core/state/postgres/pg_connection.h"
#include "daemon/core/state/state_store_api.h"

namespace custody::core {

// The NOTIFY channel; payloads are "key:<name>", "request:<id>" and "job:<id>".
inline constexpr const char* kChangeChannel = "custody_state";

class PostgresStateStore : public StateStoreApi {
 public:
  // Connects, then brings the schema up to date (refusing a newer one). owner: the daemon's host
  // id, which owns the intents and the quorums this store records.
  static Expected<std::unique_ptr<PostgresStateStore>, std::string> open(const PgSettings& settings,
                                                                          std::string owner);
  ~PostgresStateStore();
  PostgresStateStore(const PostgresStateStore&) = delete;
  PostgresStateStore& operator=(const PostgresStateStore&) = delete;

  Outcome<std::vector<Key>> load_keys();

  Outcome<std::int64_t> begin_intent(const Intent& intent);
  Outcome<std::vector<Intent>> pending_intents();
  Outcome<void> drop_intent(std::int64_t id);

  Outcome<void> insert_key(const Key& key, std::int64_t intent_id, const std::string& request_id = {},
                           const std::string& used_import_job = {});
  Outcome<void> insert_restored_key(const Key& key, const std::vector<std::int64_t>& intent_ids);
  Outcome<void> add_version(const std::string& key_name, const KeyVersion& version, std::int64_t intent_id,
                            const std::string& request_id = {}, const std::string& used_import_job = {});
  Outcome<void> mark_destroyed(const std::string& key_name, const std::vector<std::uint32_t>& versions,
                               std::int64_t intent_id);
  Outcome<void> set_state(const std::string& key_name, KeyState state, std::optional<std::int64_t> destroy_at,
                          const std::string& request_id = {});
  Outcome<void> set_min_decrypt_version(const std::string& key_name, std::uint32_t version,
                                        const std::string& request_id = {});
  Outcome<void> set_policy(const std::string& key_name, const Policy& policy, const std::string& request_id = {});

  Outcome<void> insert_request(const StoredRequest& request);
  Outcome<void> finish_request(const std::string& request_id, const std::string& state,
                               const std::optional<std::string>& outcome);
  Outcome<StoredRequest> approve_request(const std::string& request_id, const StoredApproval& approval,
                                         const ApprovalDecision& decide);
  Outcome<StoredRequest> load_request(const std::string& request_id);
  Outcome<std::vector<StoredRequest>> load_requests();
  Outcome<bool> applied(const std::string& request_id);
  Outcome<std::vector<std::string>> approvers(const std::string& request_id);

  Outcome<void> insert_job(const StoredJob& job, const std::string& request_id);
  Outcome<void> set_job_state(const std::string& id, const std::string& state);
  Outcome<std::vector<StoredJob>> load_jobs();

  Outcome<void> insert_recovery_bundle(const std::string& id, std::int64_t created_at, const std::string& envelope,
                                       const std::string& request_id);
  Outcome<std::optional<std::string>> recovery_bundle(const std::string& id);
  Outcome<std::optional<std::string>> recovery_bundle_of_request(const std::string& request_id);
  // failed_precondition: a PostgreSQL store is backed up by the database's tools (pg_dump, base
  // backups), which see every daemon's writes; a file copy from one daemon would not.
  Outcome<void> backup_to(const std::string& destination);

  Outcome<std::string> meta(const std::string& name, const std::string& initial);
  Outcome<void> set_encryptions(const std::string& key_name, std::uint32_t version, std::uint64_t count);
  Outcome<std::uint64_t> encryptions(const std::string& key_name, std::uint32_t version);

  // --- fleet primitives ---
  // Takes up to `wanted` encryptions of the version for this daemon, never letting the shared count
  // pass `limit`: the whole block when it fits, the rest of the budget when it does not.
  // resource_exhausted when the count is already at the limit; not_found when the version has no row.
  Outcome<UsageBlock> reserve_encryptions(const std::string& key_name, std::uint32_t version, std::uint64_t wanted,
                                          std::uint64_t limit);
  // A named lease for scheduled work: true when this store's connection now holds it (or already
  // did). The server drops it when the connection ends.
  Outcome<bool> try_lease(const std::string& name);
  // Whether this store's current connection holds the lease (false after a reconnect).
  Outcome<bool> holds_lease(const std::string& name);
  Outcome<void> release_lease(const std::string& name);
  // The server process of this store's connection (tests end it to simulate a dead daemon).
  int backend_pid() const { return conn_->backend_pid(); }
  const PgSettings& settings() const { return settings_; }

  // Recovery at start (StateStoreApi): this member's own work and that of members that are gone.
  Outcome<void> begin_recovery();
  bool recovers_for(const std::string& owner) const;
  void end_recovery();
  bool shared() const { return true; }
  // The conninfo (never holds a password), for logs; StateStore::path()'s counterpart.
  const std::string& path() const { return settings_.dsn; }
  std::optional<std::string> failing() const;
  std::uint64_t errors() const { return errors_.load(std::memory_order_relaxed); }

 private:
  PostgresStateStore(std::unique_ptr<PgConnection> conn, PgSettings settings, std::string owner)
      : conn_(std::move(conn)), settings_(std::move(settings)), owner_(std::move(owner)) {}
  // Takes this daemon's member lease on the current connection (again after a reconnect);
  // failed_precondition when another session holds it.
  Outcome<void> hold_member_lease();
  template <class T>
  Outcome<T> track(Outcome<T> result);
  // Runs fn inside BEGIN … COMMIT, rolling back on failure. Reconnects first if needed.
  template <class Fn>
  Outcome<void> transaction(Fn&& fn);
  // Reconnects a dropped connection before a call that is not in a transaction.
  Outcome<void> connected();
  std::mutex mutex_;
  std::unique_ptr<PgConnection> conn_;
  PgSettings settings_;
  std::string owner_;
  // Members that are gone whose leases begin_recovery took, until end_recovery gives them back.
  mutable std::mutex recovery_mutex_;
  std::vector<std::string> adopted_;
  mutable std::mutex fault_mutex_;
  std::optional<std::string> failing_;
  std::atomic<std::uint64_t> errors_{0};
};

}  // namespace custody::core
