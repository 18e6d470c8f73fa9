#pragma once
// Durable state in SQLite (WAL, synchronous=FULL): keys, versions, usage counts and the intents
// of changes that touch the token. A change is acknowledged only after its transaction commits.
//
// Crash safety: a change that touches the token first records an intent (what it is about to
// create or destroy), then acts on the token, then commits its result and drops the intent in
// one transaction. At start, an intent still present means the change was cut short; recovery
// finishes or undoes it (KeyAdmin::recover).
#include <atomic>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "daemon/core/keys/key.h"
#include "daemon/core/state/state_store_api.h"

struct sqlite3;

namespace custody::core {

// Every read is all or nothing: a scan that SQLite cannot finish (a read error, a corrupt page) is
// an error naming the table and SQLite's message, never a shorter list. Errors from SQLite are
// Code::unavailable (503); the store also remembers whether its latest call failed, for health.
class StateStore : public StateStoreApi {
 public:
  static Expected<std::unique_ptr<StateStore>, std::string> open(const std::string& path);
  ~StateStore();
  StateStore(const StateStore&) = delete;
  StateStore& operator=(const StateStore&) = delete;

  Outcome<std::vector<Key>> load_keys();

  Outcome<std::int64_t> begin_intent(const Intent& intent);
  Outcome<std::vector<Intent>> pending_intents();
  Outcome<void> drop_intent(std::int64_t id);

  // Each change commits together with dropping intent_id (0: no intent) and, for a change an
  // admin request makes, with marking request_id applied (empty: none).
  // used_import_job: the BYOK job whose import this is, marked used in the same transaction.
  Outcome<void> insert_key(const Key& key, std::int64_t intent_id, const std::string& request_id = {},
                           const std::string& used_import_job = {});
  // A key restored from a recovery bundle, committed with dropping each of its versions' intents.
  Outcome<void> insert_restored_key(const Key& key, const std::vector<std::int64_t>& intent_ids);
  Outcome<void> add_version(const std::string& key_name, const KeyVersion& version, std::int64_t intent_id,
                            const std::string& request_id = {}, const std::string& used_import_job = {});
  // Marks exactly the given versions destroyed (the ones whose objects were destroyed) and the key
  // with them; fails, changing nothing, if the key has a version row not among them.
  Outcome<void> mark_destroyed(const std::string& key_name, const std::vector<std::uint32_t>& versions,
                               std::int64_t intent_id);
  Outcome<void> set_state(const std::string& key_name, KeyState state, std::optional<std::int64_t> destroy_at,
                          const std::string& request_id = {});
  Outcome<void> set_min_decrypt_version(const std::string& key_name, std::uint32_t version,
                                        const std::string& request_id = {});
  Outcome<void> set_policy(const std::string& key_name, const Policy& policy, const std::string& request_id = {});

  // Admin requests and their approvals (dual control).
  Outcome<void> insert_request(const StoredRequest& request);
  Outcome<void> finish_request(const std::string& request_id, const std::string& state,
                               const std::optional<std::string>& outcome);
  Outcome<StoredRequest> approve_request(const std::string& request_id, const StoredApproval& approval,
                                         const ApprovalDecision& decide);
  Outcome<StoredRequest> load_request(const std::string& request_id);
  Outcome<std::vector<StoredRequest>> load_requests();
  Outcome<bool> applied(const std::string& request_id);
  // The operators whose approvals of request_id are stored, in the order they approved.
  Outcome<std::vector<std::string>> approvers(const std::string& request_id);

  // BYOK import jobs.
  Outcome<void> insert_job(const StoredJob& job, const std::string& request_id);
  Outcome<void> set_job_state(const std::string& id, const std::string& state);
  Outcome<std::vector<StoredJob>> load_jobs();

  // Recovery bundles (CONTRACT §11): the signed envelope as JSON text, stored with marking the
  // export request applied.
  Outcome<void> insert_recovery_bundle(const std::string& id, std::int64_t created_at, const std::string& envelope,
                                       const std::string& request_id);
  Outcome<std::optional<std::string>> recovery_bundle(const std::string& id);
  Outcome<std::optional<std::string>> recovery_bundle_of_request(const std::string& request_id);
  // A consistent copy of the whole database into a new file (mode 0600) with SQLite's online
  // backup API, while the daemon serves. Refuses an existing destination.
  Outcome<void> backup_to(const std::string& destination);

  // A named value fixed at first use (e.g. the instance id): returns the stored one.
  Outcome<std::string> meta(const std::string& name, const std::string& initial);
  // Durable encryption count of a version (a reservation: never below the real count). The stored
  // count only grows: a lower count leaves it as it is.
  Outcome<void> set_encryptions(const std::string& key_name, std::uint32_t version, std::uint64_t count);
  // not_found when the version has no row; unavailable when it cannot be read.
  Outcome<std::uint64_t> encryptions(const std::string& key_name, std::uint32_t version);

  const std::string& path() const { return path_; }
  // The error of the latest call if it failed in SQLite (cleared by the next call that succeeds).
  std::optional<std::string> failing() const;
  // SQLite errors since open.
  std::uint64_t errors() const { return errors_.load(std::memory_order_relaxed); }

 private:
  StateStore(sqlite3* db, std::string path) : db_(db), path_(std::move(path)) {}
  // Notes whether a call failed in SQLite, for failing() and errors().
  template <class T>
  Outcome<T> track(Outcome<T> result);
  Outcome<void> exec(const char* sql);
  Outcome<void> migrate();
  // Runs fn inside BEGIN IMMEDIATE … COMMIT, rolling back on failure.
  template <class Fn>
  Outcome<void> transaction(Fn&& fn);
  std::mutex mutex_;
  sqlite3* db_;
  std::string path_;
  mutable std::mutex fault_mutex_;
  std::optional<std::string> failing_;
  std::atomic<std::uint64_t> errors_{0};
};

}  // namespace custody::core
