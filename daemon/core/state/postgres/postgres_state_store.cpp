#include "daemon/core/state/postgres/postgres_state_store.h"

#include <boost/json.hpp>

#include <algorithm>
#include <chrono>
#include <thread>
#include <unordered_map>

#include "daemon/core/state/postgres/pg_migrations.h"

namespace custody::core {
namespace {

// Advisory lock class for leases ('cust' in ASCII); the name is hashed into the second key.
constexpr std::int64_t kLeaseClass = 1668641652;
// How long a daemon starting waits for its previous run's session to let go of its member lease.
constexpr int kOwnLeaseTries = 50;
constexpr std::chrono::milliseconds kOwnLeasePause{100};

std::string reading(const char* table) { return std::string("reading table ") + table; }

// Runs one statement that changes rows; fails unless it changed exactly `rows` (when >= 0).
Outcome<void> change(PgConnection& c, const char* what, const char* sql, const std::vector<PgParam>& params,
                     int rows = -1) {
  auto r = c.query(std::string("during ") + what, sql, params);
  if (!r) return unexpected(r.error());
  if (rows >= 0 && r->changed() != rows) return fail(Code::not_found, std::string(what) + ": no such row");
  return {};
}

// Announces a change to every daemon; delivered only if the surrounding transaction commits.
Outcome<void> announce(PgConnection& c, const std::string& what) {
  auto r =
      c.query("announcing a change", "SELECT pg_notify($1, $2)", {PgParam::text(kChangeChannel), PgParam::text(what)});
  if (!r) return unexpected(r.error());
  return {};
}

PgParam u(std::uint64_t v) { return PgParam::integer(static_cast<std::int64_t>(v)); }

Outcome<void> insert_version(PgConnection& c, const std::string& key_name, const KeyVersion& v) {
  return change(c, "insert version",
                "INSERT INTO key_versions(key_name, version, state, origin, reason, created_at, kcv, object_id,"
                " object_label) VALUES($1,$2,$3,$4,$5,$6,$7,$8,$9)",
                {PgParam::text(key_name), u(v.version), PgParam::text(v.state), PgParam::text(v.origin),
                 PgParam::text(v.reason), PgParam::integer(v.created_at), PgParam::optional(v.kcv),
                 PgParam::bytes(v.object.id), PgParam::text(v.object.label)});
}

// Marks an admin request applied in the same transaction as its change: the proof, after a crash
// of any daemon, that the change happened (exactly-once execution fleet-wide: the primary key
// makes a second execution's transaction fail).
Outcome<void> mark_applied(PgConnection& c, const std::string& request_id) {
  if (request_id.empty()) return {};
  return change(c, "mark request applied",
                "INSERT INTO applied_requests(request_id, applied_at) VALUES($1, extract(epoch from now())::bigint)",
                {PgParam::text(request_id)});
}

Outcome<void> mark_job_used(PgConnection& c, const std::string& job_id) {
  if (job_id.empty()) return {};
  if (auto r = change(c, "use import job", "UPDATE import_jobs SET state = 'used' WHERE id = $1 AND state = 'active'",
                      {PgParam::text(job_id)}, 1);
      !r)
    return r;
  return announce(c, "job:" + job_id);
}

Outcome<void> insert_key_rows(PgConnection& c, const Key& key) {
  if (auto r =
          change(c, "insert key",
                 "INSERT INTO keys(name, algorithm, state, current_version, min_decrypt_version, destroy_at,"
                 " policy, created_at, rotation_period, usage_limit, recovery)"
                 " VALUES($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11)",
                 {PgParam::text(key.name), PgParam::text(algorithm_name(key.algorithm)),
                  PgParam::text(key_state_name(key.state)), u(key.current_version), u(key.min_decrypt_version),
                  PgParam::optional(key.destroy_at), PgParam::text(boost::json::serialize(policy_to_json(key.policy))),
                  PgParam::integer(key.created_at), PgParam::optional(key.rotation.period_seconds),
                  u(key.rotation.usage_limit), PgParam::integer(key.recovery ? 1 : 0)});
      !r)
    return r;
  for (const auto& v : key.versions)
    if (auto r = insert_version(c, key.name, v); !r) return r;
  return {};
}

// Removes the intent of a change as the change commits. Gone means another daemon's recovery took
// it (this daemon's connection was lost meanwhile, so its lease lapsed) and has undone the token
// side: the change must not commit. A conflict, not a database fault: the database answered.
Outcome<void> delete_intent(PgConnection& c, std::int64_t id) {
  if (id == 0) return {};
  auto r = c.query("during drop intent", "DELETE FROM intents WHERE id = $1", {PgParam::integer(id)});
  if (!r) return unexpected(r.error());
  if (r->changed() != 1)
    return fail(Code::failed_precondition,
                "the change was undone by another daemon's recovery while this daemon's database connection was "
                "lost; nothing was changed, try again");
  return {};
}

// Session advisory locks name a lease; the server releases them when the connection ends.
Outcome<bool> holds_lease_on(PgConnection& c, const std::string& name) {
  auto held = c.query("checking a lease",
                      "SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()"
                      " AND classid = $1::int::oid AND objid = hashtext($2)::oid AND objsubid = 2 AND granted",
                      {PgParam::integer(kLeaseClass), PgParam::text(name)});
  if (!held) return unexpected(held.error());
  return held->rows() > 0;
}

Outcome<bool> take_lease_on(PgConnection& c, const std::string& name) {
  // A session lock taken twice by one connection is counted twice: take it only if not held.
  auto held = holds_lease_on(c, name);
  if (!held || *held) return held;
  auto r = c.query("taking a lease", "SELECT pg_try_advisory_lock($1::int, hashtext($2))",
                   {PgParam::integer(kLeaseClass), PgParam::text(name)});
  if (!r) return unexpected(r.error());
  return r->rows() == 1 && r->text(0, 0) == "t";
}

Outcome<void> release_lease_on(PgConnection& c, const std::string& name) {
  auto r = c.query("releasing a lease", "SELECT pg_advisory_unlock($1::int, hashtext($2))",
                   {PgParam::integer(kLeaseClass), PgParam::text(name)});
  if (!r) return unexpected(r.error());
  return {};
}

// The lease a running member holds from its first intent or quorum on: while it is held, nobody
// else recovers that member's work.
std::string member_lease(const std::string& owner) { return "member:" + owner; }

}  // namespace

Expected<std::unique_ptr<PostgresStateStore>, std::string> PostgresStateStore::open(const PgSettings& settings,
                                                                                    std::string owner) {
  auto conn = PgConnection::open(settings);
  if (!conn) return unexpected(conn.error().message);
  if (auto r = pg_migrate(**conn); !r) return unexpected(r.error().message);
  return std::unique_ptr<PostgresStateStore>(new PostgresStateStore(std::move(*conn), settings, std::move(owner)));
}

Outcome<void> PostgresStateStore::hold_member_lease() {
  auto held = take_lease_on(*conn_, member_lease(owner_));
  if (!held) return unexpected(held.error());
  if (!*held)
    return fail(Code::failed_precondition, "another database session holds the member lease of host id '" + owner_ +
                                       "': a second daemon with this host id (a copied audit directory?) or one "
                                       "recovering this daemon's interrupted changes");
  return {};
}

PostgresStateStore::~PostgresStateStore() = default;

template <class T>
Outcome<T> PostgresStateStore::track(Outcome<T> result) {
  std::lock_guard lock(fault_mutex_);
  if (!result && result.error().code == Code::unavailable) {
    errors_.fetch_add(1, std::memory_order_relaxed);
    failing_ = result.error().message;
  } else {
    failing_.reset();
  }
  return result;
}

std::optional<std::string> PostgresStateStore::failing() const {
  std::lock_guard lock(fault_mutex_);
  return failing_;
}

Outcome<void> PostgresStateStore::connected() { return conn_->ensure_connected(); }

template <class Fn>
Outcome<void> PostgresStateStore::transaction(Fn&& fn) {
  if (auto r = connected(); !r) return r;
  if (auto r = conn_->script("beginning a transaction", "BEGIN"); !r) return r;
  Outcome<void> result = fn();
  if (result) result = conn_->script("committing", "COMMIT");
  if (!result && !conn_->broken()) (void)conn_->script("rolling back", "ROLLBACK");
  return result;
}

Outcome<std::vector<Key>> PostgresStateStore::load_keys() {
  std::lock_guard lock(mutex_);
  std::vector<Key> keys;
  // One snapshot for both tables: another daemon's rotation lands in both or in neither.
  auto load = [&]() -> Outcome<void> {
    if (auto r = conn_->script("beginning a read", "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"); !r)
      return r;
    auto ks = conn_->query(reading("keys"),
                           "SELECT name, algorithm, state, current_version, min_decrypt_version, destroy_at, policy,"
                           " created_at, rotation_period, usage_limit, recovery FROM keys ORDER BY name");
    if (!ks) return unexpected(ks.error());
    for (int i = 0; i < ks->rows(); ++i) {
      Key k;
      k.name = ks->text(i, 0);
      auto alg = parse_algorithm(ks->text(i, 1));
      auto state = parse_key_state(ks->text(i, 2));
      if (!alg || !state)
        return fail(Code::internal, "state database has an unknown algorithm or state for key " + k.name);
      k.algorithm = *alg;
      k.state = *state;
      k.current_version = static_cast<std::uint32_t>(ks->integer(i, 3));
      k.min_decrypt_version = static_cast<std::uint32_t>(ks->integer(i, 4));
      if (!ks->null(i, 5)) k.destroy_at = ks->integer(i, 5);
      boost::system::error_code ec;
      auto pv = boost::json::parse(ks->text(i, 6), ec);
      auto policy = ec ? Outcome<Policy>(fail(Code::internal, "unreadable policy")) : parse_policy(pv, false);
      if (!policy) return fail(Code::internal, "key " + k.name + ": stored policy: " + policy.error().message);
      k.policy = std::move(*policy);
      k.created_at = ks->integer(i, 7);
      if (!ks->null(i, 8)) k.rotation.period_seconds = ks->integer(i, 8);
      k.rotation.usage_limit = static_cast<std::uint64_t>(ks->integer(i, 9));
      k.recovery = ks->integer(i, 10) != 0;
      keys.push_back(std::move(k));
    }
    auto vs = conn_->query(reading("key_versions"),
                           "SELECT key_name, version, state, origin, reason, created_at, kcv, object_id, object_label"
                           " FROM key_versions ORDER BY key_name, version");
    if (!vs) return unexpected(vs.error());
    std::size_t ki = 0;
    for (int i = 0; i < vs->rows(); ++i) {
      auto name = vs->text(i, 0);
      while (ki < keys.size() && keys[ki].name < name) ++ki;
      if (ki == keys.size() || keys[ki].name != name)
        return fail(Code::internal, "version row for unknown key " + name);
      KeyVersion v;
      v.version = static_cast<std::uint32_t>(vs->integer(i, 1));
      v.state = vs->text(i, 2);
      v.origin = vs->text(i, 3);
      v.reason = vs->text(i, 4);
      v.created_at = vs->integer(i, 5);
      if (!vs->null(i, 6)) v.kcv = vs->text(i, 6);
      v.object.id = vs->bytes(i, 7);
      v.object.label = vs->text(i, 8);
      if (v.version != keys[ki].versions.size() + 1)
        return fail(Code::internal, "key " + name + " has a gap in its versions");
      keys[ki].versions.push_back(std::move(v));
    }
    return {};
  };
  if (auto r = track(transaction(load)); !r) return unexpected(r.error());
  // A key is stored with its first version in one transaction: one without any lost its rows.
  for (const auto& k : keys)
    if (k.versions.empty() || k.current_version != k.versions.size())
      return fail(Code::internal, "state database: key " + k.name + " has " + std::to_string(k.versions.size()) +
                                      " version rows but its current version is " + std::to_string(k.current_version));
  return keys;
}

Outcome<std::int64_t> PostgresStateStore::begin_intent(const Intent& intent) {
  std::lock_guard lock(mutex_);
  auto run = [&]() -> Outcome<std::int64_t> {
    if (auto c = connected(); !c) return unexpected(c.error());
    if (auto held = hold_member_lease(); !held) return unexpected(held.error());
    auto r = conn_->query(
        "during record intent",
        "INSERT INTO intents(kind, key_name, version, object_id, object_label, created_at, owner)"
        " VALUES($1,$2,$3,$4,$5,$6,$7) RETURNING id",
        {PgParam::text(intent.kind), PgParam::text(intent.key_name), u(intent.version),
         PgParam::bytes(intent.object.id), PgParam::text(intent.object.label), PgParam::integer(intent.created_at),
         PgParam::text(owner_)});
    if (!r) return unexpected(r.error());
    if (r->rows() != 1) return fail(Code::unavailable, "state database error during record intent: no id returned");
    return r->integer(0, 0);
  };
  return track(run());
}

Outcome<void> PostgresStateStore::begin_recovery() {
  std::lock_guard lock(mutex_);
  auto run = [&]() -> Outcome<void> {
    if (auto c = connected(); !c) return c;
    // The session of this daemon's previous run (killed a moment ago) may still hold the lease
    // until the server notices its connection closed.
    Outcome<void> own = hold_member_lease();
    for (int tries = 1; !own && own.error().code == Code::failed_precondition && tries < kOwnLeaseTries; ++tries) {
      std::this_thread::sleep_for(kOwnLeasePause);
      own = hold_member_lease();
    }
    if (!own) return own;
    auto owners = conn_->query(reading("intents"),
                               "SELECT owner FROM intents WHERE owner <> $1 UNION"
                               " SELECT executor FROM admin_requests WHERE state = 'executing' AND executor <> $1",
                               {PgParam::text(owner_)});
    if (!owners) return unexpected(owners.error());
    std::lock_guard adopted(recovery_mutex_);
    for (int i = 0; i < owners->rows(); ++i) {
      const std::string owner = owners->text(i, 0);
      auto gone = take_lease_on(*conn_, member_lease(owner));
      if (!gone) return unexpected(gone.error());
      if (*gone) adopted_.push_back(owner);
    }
    return {};
  };
  return track(run());
}

bool PostgresStateStore::recovers_for(const std::string& owner) const {
  std::lock_guard lock(recovery_mutex_);
  return owner == owner_ || std::find(adopted_.begin(), adopted_.end(), owner) != adopted_.end();
}

void PostgresStateStore::end_recovery() {
  std::lock_guard lock(mutex_);
  std::lock_guard adopted(recovery_mutex_);
  // A lease that cannot be given back goes with the connection (the server releases it).
  for (const auto& owner : adopted_) (void)release_lease_on(*conn_, member_lease(owner));
  adopted_.clear();
}

Outcome<std::vector<Intent>> PostgresStateStore::pending_intents() {
  std::lock_guard lock(mutex_);
  auto run = [&]() -> Outcome<std::vector<Intent>> {
    if (auto c = connected(); !c) return unexpected(c.error());
    auto r = conn_->query(
        reading("intents"),
        "SELECT id, kind, key_name, version, object_id, object_label, created_at, owner FROM intents ORDER BY id");
    if (!r) return unexpected(r.error());
    std::vector<Intent> out;
    for (int i = 0; i < r->rows(); ++i) {
      // A live member's change in flight is its own to finish.
      if (!recovers_for(r->text(i, 7))) continue;
      Intent in;
      in.id = r->integer(i, 0);
      in.kind = r->text(i, 1);
      in.key_name = r->text(i, 2);
      in.version = static_cast<std::uint32_t>(r->integer(i, 3));
      in.object.id = r->bytes(i, 4);
      in.object.label = r->text(i, 5);
      in.created_at = r->integer(i, 6);
      out.push_back(std::move(in));
    }
    return out;
  };
  return track(run());
}

Outcome<void> PostgresStateStore::drop_intent(std::int64_t id) {
  std::lock_guard lock(mutex_);
  if (auto c = connected(); !c) return track(std::move(c));
  // Undone already (by this daemon's earlier run, or a member recovering it) is fine.
  return track(change(*conn_, "drop intent", "DELETE FROM intents WHERE id = $1", {PgParam::integer(id)}));
}

Outcome<void> PostgresStateStore::insert_key(const Key& key, std::int64_t intent_id, const std::string& request_id,
                                             const std::string& used_import_job) {
  std::lock_guard lock(mutex_);
  return track(transaction([&]() -> Outcome<void> {
    if (auto r = insert_key_rows(*conn_, key); !r) return r;
    if (auto r = mark_applied(*conn_, request_id); !r) return r;
    if (auto r = mark_job_used(*conn_, used_import_job); !r) return r;
    if (auto r = delete_intent(*conn_, intent_id); !r) return r;
    return announce(*conn_, "key:" + key.name);
  }));
}

Outcome<void> PostgresStateStore::insert_restored_key(const Key& key, const std::vector<std::int64_t>& intent_ids) {
  std::lock_guard lock(mutex_);
  return track(transaction([&]() -> Outcome<void> {
    if (auto r = insert_key_rows(*conn_, key); !r) return r;
    for (auto id : intent_ids)
      if (auto r = delete_intent(*conn_, id); !r) return r;
    return announce(*conn_, "key:" + key.name);
  }));
}

Outcome<void> PostgresStateStore::add_version(const std::string& key_name, const KeyVersion& version,
                                              std::int64_t intent_id, const std::string& request_id,
                                              const std::string& used_import_job) {
  std::lock_guard lock(mutex_);
  return track(transaction([&]() -> Outcome<void> {
    // The key row's lock first: it orders this against mark_destroyed on another daemon, which
    // must see every version or none of this one.
    auto locked =
        conn_->query(reading("keys"), "SELECT 1 FROM keys WHERE name = $1 FOR UPDATE", {PgParam::text(key_name)});
    if (!locked) return unexpected(locked.error());
    if (auto r = insert_version(*conn_, key_name, version); !r) return r;
    if (auto r = change(*conn_, "set current version", "UPDATE keys SET current_version = $1 WHERE name = $2",
                        {u(version.version), PgParam::text(key_name)}, 1);
        !r)
      return r;
    if (auto r = mark_applied(*conn_, request_id); !r) return r;
    if (auto r = mark_job_used(*conn_, used_import_job); !r) return r;
    if (auto r = delete_intent(*conn_, intent_id); !r) return r;
    return announce(*conn_, "key:" + key_name);
  }));
}

Outcome<void> PostgresStateStore::mark_destroyed(const std::string& key_name,
                                                 const std::vector<std::uint32_t>& versions, std::int64_t intent_id) {
  std::lock_guard lock(mutex_);
  return track(transaction([&]() -> Outcome<void> {
    if (auto r = change(*conn_, "mark key destroyed",
                        "UPDATE keys SET state = 'destroyed', destroy_at = NULL WHERE name = $1",
                        {PgParam::text(key_name)}, 1);
        !r)
      return r;
    for (std::uint32_t version : versions)
      if (auto r = change(*conn_, "mark version destroyed",
                          "UPDATE key_versions SET state = 'destroyed' WHERE key_name = $1 AND version = $2",
                          {PgParam::text(key_name), u(version)}, 1);
          !r)
        return r;
    // A version row the caller did not know of still has its object: it must not be called destroyed.
    auto left = conn_->query(reading("key_versions"),
                             "SELECT version FROM key_versions WHERE key_name = $1 AND state != 'destroyed' LIMIT 1",
                             {PgParam::text(key_name)});
    if (!left) return unexpected(left.error());
    if (left->rows() > 0)
      return fail(Code::internal, "key " + key_name + " has version " + std::to_string(left->integer(0, 0)) +
                                      " in the state database that was not destroyed; nothing was marked destroyed");
    if (auto r = delete_intent(*conn_, intent_id); !r) return r;
    return announce(*conn_, "key:" + key_name);
  }));
}

Outcome<void> PostgresStateStore::set_state(const std::string& key_name, KeyState state,
                                            std::optional<std::int64_t> destroy_at, const std::string& request_id) {
  std::lock_guard lock(mutex_);
  return track(transaction([&]() -> Outcome<void> {
    if (auto r =
            change(*conn_, "set key state", "UPDATE keys SET state = $1, destroy_at = $2 WHERE name = $3",
                   {PgParam::text(key_state_name(state)), PgParam::optional(destroy_at), PgParam::text(key_name)}, 1);
        !r)
      return r;
    if (auto r = mark_applied(*conn_, request_id); !r) return r;
    return announce(*conn_, "key:" + key_name);
  }));
}

Outcome<void> PostgresStateStore::set_min_decrypt_version(const std::string& key_name, std::uint32_t version,
                                                          const std::string& request_id) {
  std::lock_guard lock(mutex_);
  return track(transaction([&]() -> Outcome<void> {
    if (auto r =
            change(*conn_, "set minimum decrypt version", "UPDATE keys SET min_decrypt_version = $1 WHERE name = $2",
                   {u(version), PgParam::text(key_name)}, 1);
        !r)
      return r;
    if (auto r = mark_applied(*conn_, request_id); !r) return r;
    return announce(*conn_, "key:" + key_name);
  }));
}

Outcome<void> PostgresStateStore::set_policy(const std::string& key_name, const Policy& policy,
                                             const std::string& request_id) {
  std::lock_guard lock(mutex_);
  return track(transaction([&]() -> Outcome<void> {
    if (auto r = change(*conn_, "set policy", "UPDATE keys SET policy = $1 WHERE name = $2",
                        {PgParam::text(boost::json::serialize(policy_to_json(policy))), PgParam::text(key_name)}, 1);
        !r)
      return r;
    if (auto r = mark_applied(*conn_, request_id); !r) return r;
    return announce(*conn_, "key:" + key_name);
  }));
}

Outcome<void> PostgresStateStore::set_encryptions(const std::string& key_name, std::uint32_t version,
                                                  std::uint64_t count) {
  std::lock_guard lock(mutex_);
  if (auto c = connected(); !c) return track(std::move(c));
  // GREATEST: a reservation made from a stale or lower count never lowers the durable one.
  return track(
      change(*conn_, "record usage",
             "UPDATE key_versions SET encryptions = GREATEST(encryptions, $1) WHERE key_name = $2 AND version = $3",
             {u(count), PgParam::text(key_name), u(version)}, 1));
}

Outcome<std::uint64_t> PostgresStateStore::encryptions(const std::string& key_name, std::uint32_t version) {
  std::lock_guard lock(mutex_);
  auto run = [&]() -> Outcome<std::uint64_t> {
    if (auto c = connected(); !c) return unexpected(c.error());
    auto r = conn_->query(reading("key_versions"),
                          "SELECT encryptions FROM key_versions WHERE key_name = $1 AND version = $2",
                          {PgParam::text(key_name), u(version)});
    if (!r) return unexpected(r.error());
    if (r->rows() == 0)
      return fail(Code::not_found, "the state database has no row for version " + std::to_string(version) +
                                       " of key '" + key_name + "'");
    return static_cast<std::uint64_t>(r->integer(0, 0));
  };
  return track(run());
}

Outcome<UsageBlock> PostgresStateStore::reserve_encryptions(const std::string& key_name, std::uint32_t version,
                                                            std::uint64_t wanted, std::uint64_t limit) {
  std::lock_guard lock(mutex_);
  auto run = [&]() -> Outcome<UsageBlock> {
    if (wanted == 0) return fail(Code::invalid_argument, "a usage reservation must ask for at least one encryption");
    if (auto c = connected(); !c) return unexpected(c.error());
    // One statement: the CTE locks the row (waiting for any other daemon's reservation to commit)
    // and reads the count as of that lock; the UPDATE grows it from that value, capped at the limit.
    auto r =
        conn_->query("during reserve usage",
                     "WITH before AS (SELECT encryptions FROM key_versions WHERE key_name = $1 AND version = $2"
                     " FOR UPDATE)"
                     " UPDATE key_versions SET encryptions = before.encryptions + LEAST($3, $4 - before.encryptions)"
                     " FROM before WHERE key_versions.key_name = $1 AND key_versions.version = $2"
                     " AND before.encryptions < $4"
                     " RETURNING before.encryptions, key_versions.encryptions",
                     {PgParam::text(key_name), u(version), u(wanted), u(limit)});
    if (!r) return unexpected(r.error());
    if (r->rows() == 1) {
      const auto first = static_cast<std::uint64_t>(r->integer(0, 0));
      return UsageBlock{first, static_cast<std::uint64_t>(r->integer(0, 1)) - first};
    }
    auto row = conn_->query(reading("key_versions"), "SELECT 1 FROM key_versions WHERE key_name = $1 AND version = $2",
                            {PgParam::text(key_name), u(version)});
    if (!row) return unexpected(row.error());
    if (row->rows() == 0)
      return fail(Code::not_found, "the state database has no row for version " + std::to_string(version) +
                                       " of key '" + key_name + "'");
    return fail(Code::resource_exhausted, "version " + std::to_string(version) + " of key '" + key_name +
                                              "' has reached its usage limit of " + std::to_string(limit));
  };
  return track(run());
}

Outcome<bool> PostgresStateStore::try_lease(const std::string& name) {
  std::lock_guard lock(mutex_);
  if (auto c = connected(); !c) return track<bool>(unexpected(c.error()));
  return track(take_lease_on(*conn_, name));
}

Outcome<bool> PostgresStateStore::holds_lease(const std::string& name) {
  std::lock_guard lock(mutex_);
  if (auto c = connected(); !c) return track<bool>(unexpected(c.error()));
  return track(holds_lease_on(*conn_, name));
}

Outcome<void> PostgresStateStore::release_lease(const std::string& name) {
  std::lock_guard lock(mutex_);
  if (auto c = connected(); !c) return track(std::move(c));
  return track(release_lease_on(*conn_, name));
}

Outcome<std::string> PostgresStateStore::meta(const std::string& name, const std::string& initial) {
  std::lock_guard lock(mutex_);
  auto run = [&]() -> Outcome<std::string> {
    if (auto c = connected(); !c) return unexpected(c.error());
    if (auto r = change(*conn_, "write metadata", "INSERT INTO meta(name, value) VALUES($1, $2) ON CONFLICT DO NOTHING",
                        {PgParam::text(name), PgParam::text(initial)});
        !r)
      return unexpected(r.error());
    auto r = conn_->query(reading("meta"), "SELECT value FROM meta WHERE name = $1", {PgParam::text(name)});
    if (!r) return unexpected(r.error());
    if (r->rows() == 0)
      return fail(Code::internal, "state database: meta has no " + name + " right after it was written");
    return r->text(0, 0);
  };
  return track(run());
}

Outcome<void> PostgresStateStore::insert_request(const StoredRequest& r) {
  std::lock_guard lock(mutex_);
  return track(transaction([&]() -> Outcome<void> {
    if (auto c = change(*conn_, "insert request",
                        "INSERT INTO admin_requests(id, operation, params, state, created_at, expires_at, required,"
                        " challenge, proposer_uid, outcome) VALUES($1,$2,$3,$4,$5,$6,$7,$8,$9,$10)",
                        {PgParam::text(r.id), PgParam::text(r.operation), PgParam::text(r.params),
                         PgParam::text(r.state), PgParam::integer(r.created_at), PgParam::integer(r.expires_at),
                         u(r.required), PgParam::text(r.challenge), u(r.proposer_uid), PgParam::optional(r.outcome)});
        !c)
      return c;
    return announce(*conn_, "request:" + r.id);
  }));
}

namespace {

// An admin_requests row as kRequestColumns selects it (approvals are read on their own).
constexpr const char* kRequestColumns =
    "SELECT id, operation, params, state, created_at, expires_at, required, challenge, proposer_uid, outcome, executor";
StoredRequest request_of_row(const PgResult& st, int i) {
  StoredRequest r;
  r.id = st.text(i, 0);
  r.operation = st.text(i, 1);
  r.params = st.text(i, 2);
  r.state = st.text(i, 3);
  r.created_at = st.integer(i, 4);
  r.expires_at = st.integer(i, 5);
  r.required = static_cast<std::uint32_t>(st.integer(i, 6));
  r.challenge = st.text(i, 7);
  r.proposer_uid = static_cast<std::uint32_t>(st.integer(i, 8));
  if (!st.null(i, 9)) r.outcome = st.text(i, 9);
  r.executor = st.text(i, 10);
  return r;
}

// One request and its approvals, read on c (FOR UPDATE: locked until the transaction ends).
Outcome<StoredRequest> read_request(PgConnection& c, const std::string& request_id, bool lock) {
  const std::string sql = std::string(kRequestColumns) + " FROM admin_requests WHERE id = $1" + (lock ? " FOR UPDATE" : "");
  auto st = c.query(lock ? "locking the request" : reading("admin_requests"), sql.c_str(), {PgParam::text(request_id)});
  if (!st) return unexpected(st.error());
  if (st->rows() != 1) return fail(Code::not_found, "no admin request " + request_id);
  StoredRequest r = request_of_row(*st, 0);
  auto ap = c.query(reading("approvals"),
                    "SELECT operator, signature, approved_at FROM approvals WHERE request_id = $1 ORDER BY approved_at, seq",
                    {PgParam::text(request_id)});
  if (!ap) return unexpected(ap.error());
  for (int i = 0; i < ap->rows(); ++i)
    r.approvals.push_back(StoredApproval{ap->text(i, 0), ap->text(i, 1), ap->integer(i, 2)});
  return r;
}

}  // namespace

Outcome<StoredRequest> PostgresStateStore::load_request(const std::string& request_id) {
  std::lock_guard lock(mutex_);
  StoredRequest out;
  // One snapshot for the request and its approvals.
  auto load = [&]() -> Outcome<void> {
    if (auto r = conn_->script("beginning a read", "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"); !r)
      return r;
    auto r = read_request(*conn_, request_id, false);
    if (!r) return unexpected(r.error());
    out = std::move(*r);
    return {};
  };
  if (auto r = track(transaction(load)); !r) return unexpected(r.error());
  return out;
}

Outcome<StoredRequest> PostgresStateStore::approve_request(const std::string& request_id, const StoredApproval& a,
                                                           const ApprovalDecision& decide) {
  std::lock_guard lock(mutex_);
  StoredRequest stored;
  auto run = transaction([&]() -> Outcome<void> {
    // The row lock orders approvals of one request across the fleet: the decision is made on the
    // state and approvals every earlier approval committed, whatever this daemon's view says.
    auto current = read_request(*conn_, request_id, true);
    if (!current) return unexpected(current.error());
    stored = std::move(*current);
    auto next = decide(stored);
    if (!next) return unexpected(next.error());
    if (auto r = change(*conn_, "insert approval",
                        "INSERT INTO approvals(request_id, operator, signature, approved_at) VALUES($1,$2,$3,$4)",
                        {PgParam::text(request_id), PgParam::text(a.operator_name), PgParam::text(a.signature),
                         PgParam::integer(a.approved_at)});
        !r)
      return r;
    // The daemon taking the quorum runs the request: it holds its member lease from now on, so no
    // other member starting meanwhile takes the run over.
    const bool runs_here = *next == "executing";
    if (runs_here)
      if (auto held = hold_member_lease(); !held) return held;
    if (auto r = change(*conn_, "update request", "UPDATE admin_requests SET state = $1, executor = $2 WHERE id = $3",
                        {PgParam::text(*next), PgParam::text(runs_here ? owner_ : stored.executor),
                         PgParam::text(request_id)},
                        1);
        !r)
      return r;
    stored.approvals.push_back(a);
    stored.state = *next;
    if (runs_here) stored.executor = owner_;
    return announce(*conn_, "request:" + request_id);
  });
  if (auto r = track(std::move(run)); !r) return unexpected(r.error());
  return stored;
}

Outcome<void> PostgresStateStore::finish_request(const std::string& request_id, const std::string& state,
                                                 const std::optional<std::string>& outcome) {
  std::lock_guard lock(mutex_);
  return track(transaction([&]() -> Outcome<void> {
    if (auto r = change(*conn_, "update request", "UPDATE admin_requests SET state = $1, outcome = $2 WHERE id = $3",
                        {PgParam::text(state), PgParam::optional(outcome), PgParam::text(request_id)}, 1);
        !r)
      return r;
    return announce(*conn_, "request:" + request_id);
  }));
}

Outcome<std::vector<StoredRequest>> PostgresStateStore::load_requests() {
  std::lock_guard lock(mutex_);
  std::vector<StoredRequest> out;
  auto load = [&]() -> Outcome<void> {
    if (auto r = conn_->script("beginning a read", "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"); !r)
      return r;
    auto st = conn_->query(reading("admin_requests"),
                           (std::string(kRequestColumns) + " FROM admin_requests ORDER BY created_at, id").c_str());
    if (!st) return unexpected(st.error());
    std::unordered_map<std::string, std::size_t> by_id;
    for (int i = 0; i < st->rows(); ++i) {
      out.push_back(request_of_row(*st, i));
      by_id.emplace(out.back().id, out.size() - 1);
    }
    // In the order read_request gives them: by approval time, then as stored.
    auto ap = conn_->query(reading("approvals"),
                           "SELECT request_id, operator, signature, approved_at FROM approvals ORDER BY approved_at, seq");
    if (!ap) return unexpected(ap.error());
    for (int i = 0; i < ap->rows(); ++i)
      if (auto it = by_id.find(ap->text(i, 0)); it != by_id.end())
        out[it->second].approvals.push_back(StoredApproval{ap->text(i, 1), ap->text(i, 2), ap->integer(i, 3)});
    return {};
  };
  if (auto r = track(transaction(load)); !r) return unexpected(r.error());
  return out;
}

Outcome<std::vector<std::string>> PostgresStateStore::approvers(const std::string& request_id) {
  std::lock_guard lock(mutex_);
  auto run = [&]() -> Outcome<std::vector<std::string>> {
    if (auto c = connected(); !c) return unexpected(c.error());
    auto r = conn_->query(reading("approvals"),
                          "SELECT operator FROM approvals WHERE request_id = $1 ORDER BY approved_at, seq",
                          {PgParam::text(request_id)});
    if (!r) return unexpected(r.error());
    std::vector<std::string> names;
    for (int i = 0; i < r->rows(); ++i) names.push_back(r->text(i, 0));
    return names;
  };
  return track(run());
}

Outcome<void> PostgresStateStore::insert_recovery_bundle(const std::string& id, std::int64_t created_at,
                                                         const std::string& envelope, const std::string& request_id) {
  std::lock_guard lock(mutex_);
  return track(transaction([&]() -> Outcome<void> {
    if (auto r = change(
            *conn_, "insert recovery bundle",
            "INSERT INTO recovery_bundles(id, created_at, request_id, envelope) VALUES($1,$2,$3,$4)",
            {PgParam::text(id), PgParam::integer(created_at), PgParam::text(request_id), PgParam::text(envelope)});
        !r)
      return r;
    return mark_applied(*conn_, request_id);
  }));
}

Outcome<std::optional<std::string>> PostgresStateStore::recovery_bundle(const std::string& id) {
  std::lock_guard lock(mutex_);
  auto run = [&]() -> Outcome<std::optional<std::string>> {
    if (auto c = connected(); !c) return unexpected(c.error());
    auto r = conn_->query(reading("recovery_bundles"), "SELECT envelope FROM recovery_bundles WHERE id = $1",
                          {PgParam::text(id)});
    if (!r) return unexpected(r.error());
    if (r->rows() == 0) return std::optional<std::string>{};
    return std::optional<std::string>{r->text(0, 0)};
  };
  return track(run());
}

Outcome<std::optional<std::string>> PostgresStateStore::recovery_bundle_of_request(const std::string& request_id) {
  std::lock_guard lock(mutex_);
  auto run = [&]() -> Outcome<std::optional<std::string>> {
    if (auto c = connected(); !c) return unexpected(c.error());
    auto r = conn_->query(reading("recovery_bundles"), "SELECT id FROM recovery_bundles WHERE request_id = $1 LIMIT 1",
                          {PgParam::text(request_id)});
    if (!r) return unexpected(r.error());
    if (r->rows() == 0) return std::optional<std::string>{};
    return std::optional<std::string>{r->text(0, 0)};
  };
  return track(run());
}

Outcome<void> PostgresStateStore::backup_to(const std::string& destination) {
  return fail(Code::failed_precondition,
              "the state is in PostgreSQL: back it up with the database's own tools"
              " (pg_dump, base backups, replication), not to " +
                  destination);
}

Outcome<bool> PostgresStateStore::applied(const std::string& request_id) {
  std::lock_guard lock(mutex_);
  auto run = [&]() -> Outcome<bool> {
    if (auto c = connected(); !c) return unexpected(c.error());
    // A read error is not "not applied": that answer would run a committed operation again.
    auto r = conn_->query(reading("applied_requests"), "SELECT 1 FROM applied_requests WHERE request_id = $1",
                          {PgParam::text(request_id)});
    if (!r) return unexpected(r.error());
    return r->rows() > 0;
  };
  return track(run());
}

Outcome<void> PostgresStateStore::insert_job(const StoredJob& j, const std::string& request_id) {
  std::lock_guard lock(mutex_);
  return track(transaction([&]() -> Outcome<void> {
    if (auto r = change(*conn_, "insert import job",
                        "INSERT INTO import_jobs(id, key_name, algorithm, method, transport_key, state, created_at,"
                        " expires_at, object_id, object_label, public_key, policy)"
                        " VALUES($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12)",
                        {PgParam::text(j.id), PgParam::text(j.key_name), PgParam::text(j.algorithm),
                         PgParam::text(j.method), PgParam::optional(j.transport_key), PgParam::text(j.state),
                         PgParam::integer(j.created_at), PgParam::integer(j.expires_at), PgParam::bytes(j.wrapping.id),
                         PgParam::text(j.wrapping.label), PgParam::optional(j.public_key), PgParam::text(j.policy)});
        !r)
      return r;
    if (auto r = mark_applied(*conn_, request_id); !r) return r;
    return announce(*conn_, "job:" + j.id);
  }));
}

Outcome<void> PostgresStateStore::set_job_state(const std::string& id, const std::string& state) {
  std::lock_guard lock(mutex_);
  return track(transaction([&]() -> Outcome<void> {
    if (auto r = change(*conn_, "update import job", "UPDATE import_jobs SET state = $1 WHERE id = $2",
                        {PgParam::text(state), PgParam::text(id)}, 1);
        !r)
      return r;
    return announce(*conn_, "job:" + id);
  }));
}

Outcome<std::vector<StoredJob>> PostgresStateStore::load_jobs() {
  std::lock_guard lock(mutex_);
  auto run = [&]() -> Outcome<std::vector<StoredJob>> {
    if (auto c = connected(); !c) return unexpected(c.error());
    auto st = conn_->query(reading("import_jobs"),
                           "SELECT id, key_name, algorithm, method, transport_key, state, created_at, expires_at,"
                           " object_id, object_label, public_key, policy FROM import_jobs ORDER BY created_at, id");
    if (!st) return unexpected(st.error());
    std::vector<StoredJob> out;
    for (int i = 0; i < st->rows(); ++i) {
      StoredJob j;
      j.id = st->text(i, 0);
      j.key_name = st->text(i, 1);
      j.algorithm = st->text(i, 2);
      j.method = st->text(i, 3);
      if (!st->null(i, 4)) j.transport_key = st->text(i, 4);
      j.state = st->text(i, 5);
      j.created_at = st->integer(i, 6);
      j.expires_at = st->integer(i, 7);
      if (!st->null(i, 8)) j.wrapping.id = st->bytes(i, 8);
      if (!st->null(i, 9)) j.wrapping.label = st->text(i, 9);
      if (!st->null(i, 10)) j.public_key = st->text(i, 10);
      j.policy = st->text(i, 11);
      out.push_back(std::move(j));
    }
    return out;
  };
  return track(run());
}

}  // namespace custody::core
