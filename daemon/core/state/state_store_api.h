#pragma once
// What the daemon needs from its durable state, whichever database keeps it: StateStore (SQLite,
// one host, the default) and PostgresStateStore (a fleet sharing one database) implement the same
// schema and semantics. Every read is all or nothing, every change is acknowledged only after its
// transaction commits, and database errors are Code::unavailable. The per-method contracts are
// written once, on StateStore.
#include <algorithm>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "daemon/core/error.h"
#include "daemon/core/keys/key.h"
#include "daemon/core/state/state_types.h"

namespace custody::core {

class StateStoreApi {
 public:
  virtual ~StateStoreApi() = default;

  virtual Outcome<std::vector<Key>> load_keys() = 0;

  virtual Outcome<std::int64_t> begin_intent(const Intent& intent) = 0;
  virtual Outcome<std::vector<Intent>> pending_intents() = 0;
  virtual Outcome<void> drop_intent(std::int64_t id) = 0;

  virtual Outcome<void> insert_key(const Key& key, std::int64_t intent_id, const std::string& request_id = {},
                                   const std::string& used_import_job = {}) = 0;
  virtual Outcome<void> insert_restored_key(const Key& key, const std::vector<std::int64_t>& intent_ids) = 0;
  virtual Outcome<void> add_version(const std::string& key_name, const KeyVersion& version, std::int64_t intent_id,
                                    const std::string& request_id = {}, const std::string& used_import_job = {}) = 0;
  virtual Outcome<void> mark_destroyed(const std::string& key_name, const std::vector<std::uint32_t>& versions,
                                       std::int64_t intent_id) = 0;
  virtual Outcome<void> set_state(const std::string& key_name, KeyState state, std::optional<std::int64_t> destroy_at,
                                  const std::string& request_id = {}) = 0;
  virtual Outcome<void> set_min_decrypt_version(const std::string& key_name, std::uint32_t version,
                                                const std::string& request_id = {}) = 0;
  virtual Outcome<void> set_policy(const std::string& key_name, const Policy& policy,
                                   const std::string& request_id = {}) = 0;

  virtual Outcome<void> insert_request(const StoredRequest& request) = 0;
  virtual Outcome<void> finish_request(const std::string& request_id, const std::string& state,
                                       const std::optional<std::string>& outcome) = 0;
  // Decides an approval on the request as stored, under the store's lock on it: returns the
  // request's next state, or an error (then nothing is stored). It runs inside the store's
  // transaction, so it must not call the store (or anything that does).
  using ApprovalDecision = std::function<Outcome<std::string>(const StoredRequest& stored)>;
  // Records an approval decided on the request as it is stored now, not as this daemon last saw
  // it (another daemon may have approved, run or cancelled it since): locks the request, reads its
  // state and approvals, asks decide, then stores the approval and the next state in the same
  // transaction. Returns the request as stored after it; not_found when there is no such request.
  virtual Outcome<StoredRequest> approve_request(const std::string& request_id, const StoredApproval& approval,
                                                 const ApprovalDecision& decide) = 0;
  // One request as stored now, with its approvals; not_found when there is none.
  virtual Outcome<StoredRequest> load_request(const std::string& request_id) = 0;
  virtual Outcome<std::vector<StoredRequest>> load_requests() = 0;
  virtual Outcome<bool> applied(const std::string& request_id) = 0;
  virtual Outcome<std::vector<std::string>> approvers(const std::string& request_id) = 0;

  virtual Outcome<void> insert_job(const StoredJob& job, const std::string& request_id) = 0;
  virtual Outcome<void> set_job_state(const std::string& id, const std::string& state) = 0;
  virtual Outcome<std::vector<StoredJob>> load_jobs() = 0;

  virtual Outcome<void> insert_recovery_bundle(const std::string& id, std::int64_t created_at,
                                               const std::string& envelope, const std::string& request_id) = 0;
  virtual Outcome<std::optional<std::string>> recovery_bundle(const std::string& id) = 0;
  virtual Outcome<std::optional<std::string>> recovery_bundle_of_request(const std::string& request_id) = 0;
  virtual Outcome<void> backup_to(const std::string& destination) = 0;

  virtual Outcome<std::string> meta(const std::string& name, const std::string& initial) = 0;
  virtual Outcome<void> set_encryptions(const std::string& key_name, std::uint32_t version, std::uint64_t count) = 0;
  virtual Outcome<std::uint64_t> encryptions(const std::string& key_name, std::uint32_t version) = 0;
  // Takes up to `wanted` encryptions of the version for this daemon without letting the stored
  // count pass `limit` (resource_exhausted when it is there already). PostgreSQL takes the block
  // atomically for the whole fleet; this default suits one process whose caller serialises
  // reservations per version (UsageMeter does).
  virtual Outcome<UsageBlock> reserve_encryptions(const std::string& key_name, std::uint32_t version,
                                                  std::uint64_t wanted, std::uint64_t limit) {
    auto current = encryptions(key_name, version);
    if (!current) return unexpected(current.error());
    if (*current >= limit)
      return fail(Code::resource_exhausted, "version " + std::to_string(version) + " of key '" + key_name +
                                                "' has used its whole budget of encryptions");
    const std::uint64_t granted = std::min(wanted, limit - *current);
    if (auto r = set_encryptions(key_name, version, *current + granted); !r) return unexpected(r.error());
    return UsageBlock{*current, granted};
  }

  // Recovery at start: whose interrupted work (intents, requests past their quorum) this daemon
  // finishes. One host: all of it. A fleet: its own, and that of members that are gone (no
  // session holds their member lease); begin_recovery takes those leases and end_recovery gives
  // them back, so a member coming back meanwhile waits instead of redoing the same work.
  virtual Outcome<void> begin_recovery() { return {}; }
  virtual bool recovers_for(const std::string& /*owner*/) const { return true; }
  virtual void end_recovery() {}
  // Whether other daemons change this state too (a fleet): then what this daemon holds in memory
  // can lag behind it, and admin changes read it afresh first (KeyAdmin::refresh).
  virtual bool shared() const { return false; }
  // Where the state lives, for logs: a file path or a conninfo (never a password).
  virtual const std::string& path() const = 0;
  // The error of the latest call if it failed in the database (cleared by the next success).
  virtual std::optional<std::string> failing() const = 0;
  // Database errors since open.
  virtual std::uint64_t errors() const = 0;
};

}  // namespace custody::core
