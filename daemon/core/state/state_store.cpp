#include "daemon/core/state/state_store.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <boost/json.hpp>

namespace custody::core {
namespace {

// Schema versions, applied in order; PRAGMA user_version records how far a database is.
constexpr const char* kMigrations[] = {
    R"sql(
CREATE TABLE keys (
  name TEXT PRIMARY KEY,
  algorithm TEXT NOT NULL,
  state TEXT NOT NULL,
  current_version INTEGER NOT NULL,
  min_decrypt_version INTEGER NOT NULL DEFAULT 1,
  destroy_at INTEGER,
  policy TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  rotation_period INTEGER,
  usage_limit INTEGER NOT NULL
) STRICT;
CREATE TABLE key_versions (
  key_name TEXT NOT NULL REFERENCES keys(name),
  version INTEGER NOT NULL,
  state TEXT NOT NULL,
  origin TEXT NOT NULL,
  reason TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  kcv TEXT,
  object_id BLOB NOT NULL,
  object_label TEXT NOT NULL,
  encryptions INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (key_name, version)
) STRICT;
CREATE TABLE intents (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  kind TEXT NOT NULL,
  key_name TEXT NOT NULL,
  version INTEGER NOT NULL,
  object_id BLOB,
  object_label TEXT,
  created_at INTEGER NOT NULL
) STRICT;
)sql",
    R"sql(
CREATE TABLE meta (
  name TEXT PRIMARY KEY,
  value TEXT NOT NULL
) STRICT;
CREATE TABLE admin_requests (
  id TEXT PRIMARY KEY,
  operation TEXT NOT NULL,
  params TEXT NOT NULL,
  state TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL,
  required INTEGER NOT NULL,
  challenge TEXT NOT NULL,
  proposer_uid INTEGER NOT NULL,
  outcome TEXT
) STRICT;
CREATE TABLE approvals (
  request_id TEXT NOT NULL REFERENCES admin_requests(id),
  operator TEXT NOT NULL,
  signature TEXT NOT NULL,
  approved_at INTEGER NOT NULL,
  PRIMARY KEY (request_id, operator)
) STRICT;
CREATE TABLE applied_requests (
  request_id TEXT PRIMARY KEY,
  applied_at INTEGER NOT NULL
) STRICT;
)sql",
    R"sql(
CREATE TABLE import_jobs (
  id TEXT PRIMARY KEY,
  key_name TEXT NOT NULL,
  algorithm TEXT NOT NULL,
  method TEXT NOT NULL,
  transport_key TEXT,
  state TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL,
  object_id BLOB,
  object_label TEXT,
  public_key TEXT,
  policy TEXT NOT NULL
) STRICT;
)sql",
    // Recovery (CONTRACT §11): which keys may be backed up, and the bundles made.
    R"sql(
ALTER TABLE keys ADD COLUMN recovery INTEGER NOT NULL DEFAULT 0;
CREATE TABLE recovery_bundles (
  id TEXT PRIMARY KEY,
  created_at INTEGER NOT NULL,
  request_id TEXT NOT NULL,
  envelope TEXT NOT NULL
) STRICT;
)sql",
    // Which daemon recorded an intent, and which runs a request past its quorum: a fleet member
    // recovers its own and those of members that are gone, never a live member's (PostgreSQL).
    // One host's are all its own.
    R"sql(
ALTER TABLE intents ADD COLUMN owner TEXT NOT NULL DEFAULT '';
ALTER TABLE admin_requests ADD COLUMN executor TEXT NOT NULL DEFAULT '';
)sql",
};

// A prepared statement that finalizes itself. A failed prepare or bind is kept and reported by
// ok(), so a statement is never run with a parameter missing.
class Statement {
 public:
  Statement(sqlite3* db, const char* sql) { rc_ = sqlite3_prepare_v2(db, sql, -1, &stmt_, nullptr); }
  ~Statement() { sqlite3_finalize(stmt_); }
  bool ok() const { return rc_ == SQLITE_OK; }
  Statement& text(int i, const std::string& s) {
    return checked(sqlite3_bind_text(stmt_, i, s.data(), static_cast<int>(s.size()), SQLITE_TRANSIENT));
  }
  Statement& blob(int i, const Bytes& b) {
    return checked(sqlite3_bind_blob(stmt_, i, b.data(), static_cast<int>(b.size()), SQLITE_TRANSIENT));
  }
  Statement& integer(int i, std::int64_t v) { return checked(sqlite3_bind_int64(stmt_, i, v)); }
  template <class T>
  Statement& optional(int i, const std::optional<T>& v) {
    if (v) return bind(i, *v);
    return checked(sqlite3_bind_null(stmt_, i));
  }
  // SQLITE_ROW, SQLITE_DONE or an error; never runs a statement that failed to prepare or bind.
  int step() { return ok() ? sqlite3_step(stmt_) : rc_; }
  std::string column_text(int i) {
    auto* p = sqlite3_column_text(stmt_, i);
    return p ? std::string(reinterpret_cast<const char*>(p), static_cast<std::size_t>(sqlite3_column_bytes(stmt_, i))) : "";
  }
  bool column_null(int i) { return sqlite3_column_type(stmt_, i) == SQLITE_NULL; }
  std::int64_t column_int(int i) { return sqlite3_column_int64(stmt_, i); }
  Bytes column_blob(int i) {
    auto* p = static_cast<const std::uint8_t*>(sqlite3_column_blob(stmt_, i));
    return p ? Bytes(p, p + sqlite3_column_bytes(stmt_, i)) : Bytes{};
  }

 private:
  Statement& checked(int rc) {
    if (rc_ == SQLITE_OK && rc != SQLITE_OK) rc_ = rc;
    return *this;
  }
  Statement& bind(int i, const std::string& s) { return text(i, s); }
  Statement& bind(int i, std::int64_t v) { return integer(i, v); }
  sqlite3_stmt* stmt_ = nullptr;
  int rc_;
};

Error db_error(sqlite3* db, const std::string& what) {
  std::string message = sqlite3_errmsg(db);
  const std::string code = sqlite3_errstr(sqlite3_extended_errcode(db));
  if (code != message) message += " (" + code + ")";
  return Error{Code::unavailable, "state database error " + what + ": " + message};
}

Error read_error(sqlite3* db, const char* table) { return db_error(db, std::string("reading table ") + table); }

// Runs a query to its end, handing each row to on_row. Anything but SQLITE_ROW or SQLITE_DONE is
// an error naming the table: the caller gets every row or none, never the rows before a fault.
template <class OnRow>
Outcome<void> scan(sqlite3* db, Statement& st, const char* table, OnRow&& on_row) {
  for (;;) {
    const int rc = st.step();
    if (rc == SQLITE_DONE) return {};
    if (rc != SQLITE_ROW) return unexpected(read_error(db, table));
    if (auto r = on_row(); !r) return r;
  }
}

// A query of at most one row: the row's presence, or an error naming the table.
Outcome<bool> read_one(sqlite3* db, Statement& st, const char* table) {
  const int rc = st.step();
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  return unexpected(read_error(db, table));
}

// Runs one statement that changes rows; fails unless it changed exactly `rows` (when >= 0).
Outcome<void> change(sqlite3* db, Statement& st, const char* what, int rows = -1) {
  if (st.step() != SQLITE_DONE) return unexpected(db_error(db, std::string("during ") + what));
  if (rows >= 0 && sqlite3_changes(db) != rows) return fail(Code::not_found, std::string(what) + ": no such row");
  return {};
}

Outcome<void> insert_version(sqlite3* db, const std::string& key_name, const KeyVersion& v) {
  Statement st(db,
               "INSERT INTO key_versions(key_name, version, state, origin, reason, created_at, kcv, object_id,"
               " object_label) VALUES(?,?,?,?,?,?,?,?,?)");
  st.text(1, key_name).integer(2, v.version).text(3, v.state).text(4, v.origin).text(5, v.reason);
  st.integer(6, v.created_at).optional(7, v.kcv).blob(8, v.object.id).text(9, v.object.label);
  return change(db, st, "insert version");
}

// Marks an admin request as applied in the same transaction as its change: the proof, after a
// crash, that the change happened (exactly-once execution).
Outcome<void> mark_applied(sqlite3* db, const std::string& request_id) {
  if (request_id.empty()) return {};
  Statement st(db, "INSERT INTO applied_requests(request_id, applied_at) VALUES(?, strftime('%s','now'))");
  st.text(1, request_id);
  return change(db, st, "mark request applied");
}

Outcome<void> mark_job_used(sqlite3* db, const std::string& job_id) {
  if (job_id.empty()) return {};
  Statement st(db, "UPDATE import_jobs SET state = 'used' WHERE id = ? AND state = 'active'");
  st.text(1, job_id);
  return change(db, st, "use import job", 1);
}

Outcome<void> insert_key_rows(sqlite3* db, const Key& key) {
  Statement st(db,
               "INSERT INTO keys(name, algorithm, state, current_version, min_decrypt_version, destroy_at, policy,"
               " created_at, rotation_period, usage_limit, recovery) VALUES(?,?,?,?,?,?,?,?,?,?,?)");
  st.text(1, key.name).text(2, algorithm_name(key.algorithm)).text(3, key_state_name(key.state));
  st.integer(4, key.current_version).integer(5, key.min_decrypt_version).optional(6, key.destroy_at);
  st.text(7, boost::json::serialize(policy_to_json(key.policy))).integer(8, key.created_at);
  st.optional(9, key.rotation.period_seconds).integer(10, static_cast<std::int64_t>(key.rotation.usage_limit));
  st.integer(11, key.recovery ? 1 : 0);
  if (auto r = change(db, st, "insert key"); !r) return r;
  for (const auto& v : key.versions)
    if (auto r = insert_version(db, key.name, v); !r) return r;
  return {};
}

Outcome<void> delete_intent(sqlite3* db, std::int64_t id) {
  if (id == 0) return {};
  Statement st(db, "DELETE FROM intents WHERE id = ?");
  st.integer(1, id);
  return change(db, st, "drop intent");
}

}  // namespace

namespace {

// The state (key names, policies, admin requests) is the daemon's alone, whatever the umask it
// was started with: the database file is created 0600 before SQLite opens it, and SQLite gives
// the -wal and -shm files it makes the database file's mode. A file that exists open to group
// or others (an older custodyd made it under umask 022) is tightened to 0600.
Expected<void, std::string> keep_private(const std::string& path, bool create) {
  const int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC | (create ? O_CREAT : 0), 0600);
  if (fd < 0) {
    if (!create && errno == ENOENT) return {};
    return unexpected("cannot open state database file " + path + ": " + std::strerror(errno));
  }
  struct stat st {};
  std::string problem;
  if (::fstat(fd, &st) != 0) problem = std::string("cannot stat it: ") + std::strerror(errno);
  else if (!S_ISREG(st.st_mode)) problem = "it is not a regular file";
  else if ((st.st_mode & 077) != 0 && ::fchmod(fd, 0600) != 0)
    problem = std::string("it is open to group or others and cannot be made 0600: ") + std::strerror(errno);
  ::close(fd);  // opened only to check and fix its mode: nothing written through it
  if (!problem.empty()) return unexpected("state database file " + path + ": " + problem);
  return {};
}

}  // namespace

Expected<std::unique_ptr<StateStore>, std::string> StateStore::open(const std::string& path) {
  if (path != ":memory:") {
    for (const auto& [file, create] : {std::pair{path, true}, std::pair{path + "-wal", false}, std::pair{path + "-shm", false}})
      if (auto ok = keep_private(file, create); !ok) return unexpected(ok.error());
  }
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX,
                      nullptr) != SQLITE_OK) {
    std::string msg = db ? sqlite3_errmsg(db) : "out of memory";
    sqlite3_close(db);
    return unexpected("cannot open state database " + path + ": " + msg);
  }
  std::unique_ptr<StateStore> store(new StateStore(db, path));
  for (const char* pragma : {"PRAGMA journal_mode=WAL;", "PRAGMA synchronous=FULL;", "PRAGMA foreign_keys=ON;",
                             "PRAGMA busy_timeout=5000;"}) {
    if (auto r = store->exec(pragma); !r) return unexpected(r.error().message);
  }
  if (auto r = store->migrate(); !r) return unexpected(r.error().message);
  return store;
}

StateStore::~StateStore() { sqlite3_close(db_); }

template <class T>
Outcome<T> StateStore::track(Outcome<T> result) {
  std::lock_guard lock(fault_mutex_);
  if (!result && result.error().code == Code::unavailable) {
    errors_.fetch_add(1, std::memory_order_relaxed);
    failing_ = result.error().message;
  } else {
    failing_.reset();
  }
  return result;
}

std::optional<std::string> StateStore::failing() const {
  std::lock_guard lock(fault_mutex_);
  return failing_;
}

Outcome<void> StateStore::exec(const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db_, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = err ? err : sqlite3_errmsg(db_);
    sqlite3_free(err);
    return fail(Code::unavailable, "state database error: " + msg);
  }
  return {};
}

template <class Fn>
Outcome<void> StateStore::transaction(Fn&& fn) {
  if (auto r = exec("BEGIN IMMEDIATE;"); !r) return r;
  Outcome<void> result = fn();
  if (result) result = exec("COMMIT;");
  if (!result) (void)exec("ROLLBACK;");
  return result;
}

Outcome<void> StateStore::migrate() {
  std::lock_guard lock(mutex_);
  Statement v(db_, "PRAGMA user_version");
  if (v.step() != SQLITE_ROW) return unexpected(db_error(db_, "reading the schema version"));
  const auto current = static_cast<std::size_t>(v.column_int(0));
  constexpr std::size_t latest = std::size(kMigrations);
  if (current > latest)
    return fail(Code::internal, "the state database is from a newer custodyd (schema " + std::to_string(current) + ")");
  for (std::size_t i = current; i < latest; ++i) {
    auto r = transaction([&]() -> Outcome<void> {
      if (auto m = exec(kMigrations[i]); !m) return m;
      return exec(("PRAGMA user_version = " + std::to_string(i + 1) + ";").c_str());
    });
    if (!r) return r;
  }
  return {};
}

Outcome<std::vector<Key>> StateStore::load_keys() {
  std::lock_guard lock(mutex_);
  std::vector<Key> keys;
  auto load = [&]() -> Outcome<void> {
    Statement ks(db_,
                 "SELECT name, algorithm, state, current_version, min_decrypt_version, destroy_at, policy, created_at,"
                 " rotation_period, usage_limit, recovery FROM keys ORDER BY name");
    auto scanned = scan(db_, ks, "keys", [&]() -> Outcome<void> {
      Key k;
      k.name = ks.column_text(0);
      auto alg = parse_algorithm(ks.column_text(1));
      auto state = parse_key_state(ks.column_text(2));
      if (!alg || !state) return fail(Code::internal, "state database has an unknown algorithm or state for key " + k.name);
      k.algorithm = *alg;
      k.state = *state;
      k.current_version = static_cast<std::uint32_t>(ks.column_int(3));
      k.min_decrypt_version = static_cast<std::uint32_t>(ks.column_int(4));
      if (!ks.column_null(5)) k.destroy_at = ks.column_int(5);
      boost::system::error_code ec;
      auto pv = boost::json::parse(ks.column_text(6), ec);
      auto policy = ec ? Outcome<Policy>(fail(Code::internal, "unreadable policy")) : parse_policy(pv, false);
      if (!policy) return fail(Code::internal, "key " + k.name + ": stored policy: " + policy.error().message);
      k.policy = std::move(*policy);
      k.created_at = ks.column_int(7);
      if (!ks.column_null(8)) k.rotation.period_seconds = ks.column_int(8);
      k.rotation.usage_limit = static_cast<std::uint64_t>(ks.column_int(9));
      k.recovery = ks.column_int(10) != 0;
      keys.push_back(std::move(k));
      return {};
    });
    if (!scanned) return scanned;
    Statement vs(db_,
                 "SELECT key_name, version, state, origin, reason, created_at, kcv, object_id, object_label"
                 " FROM key_versions ORDER BY key_name, version");
    std::size_t ki = 0;
    return scan(db_, vs, "key_versions", [&]() -> Outcome<void> {
      auto name = vs.column_text(0);
      while (ki < keys.size() && keys[ki].name < name) ++ki;
      if (ki == keys.size() || keys[ki].name != name) return fail(Code::internal, "version row for unknown key " + name);
      KeyVersion v;
      v.version = static_cast<std::uint32_t>(vs.column_int(1));
      v.state = vs.column_text(2);
      v.origin = vs.column_text(3);
      v.reason = vs.column_text(4);
      v.created_at = vs.column_int(5);
      if (!vs.column_null(6)) v.kcv = vs.column_text(6);
      v.object.id = vs.column_blob(7);
      v.object.label = vs.column_text(8);
      if (v.version != keys[ki].versions.size() + 1)
        return fail(Code::internal, "key " + name + " has a gap in its versions");
      keys[ki].versions.push_back(std::move(v));
      return {};
    });
  };
  if (auto r = track(load()); !r) return unexpected(r.error());
  // A key is stored with its first version in one transaction: one without any lost its rows.
  for (const auto& k : keys)
    if (k.versions.empty() || k.current_version != k.versions.size())
      return fail(Code::internal, "state database: key " + k.name + " has " + std::to_string(k.versions.size()) +
                                      " version rows but its current version is " + std::to_string(k.current_version));
  return keys;
}

Outcome<std::int64_t> StateStore::begin_intent(const Intent& intent) {
  std::lock_guard lock(mutex_);
  Statement st(db_,
               "INSERT INTO intents(kind, key_name, version, object_id, object_label, created_at) VALUES(?,?,?,?,?,?)");
  st.text(1, intent.kind).text(2, intent.key_name).integer(3, intent.version).blob(4, intent.object.id);
  st.text(5, intent.object.label).integer(6, intent.created_at);
  if (auto r = track(change(db_, st, "record intent")); !r) return unexpected(r.error());
  return sqlite3_last_insert_rowid(db_);
}

Outcome<std::vector<Intent>> StateStore::pending_intents() {
  std::lock_guard lock(mutex_);
  Statement st(db_, "SELECT id, kind, key_name, version, object_id, object_label, created_at FROM intents ORDER BY id");
  std::vector<Intent> out;
  auto scanned = scan(db_, st, "intents", [&]() -> Outcome<void> {
    Intent i;
    i.id = st.column_int(0);
    i.kind = st.column_text(1);
    i.key_name = st.column_text(2);
    i.version = static_cast<std::uint32_t>(st.column_int(3));
    i.object.id = st.column_blob(4);
    i.object.label = st.column_text(5);
    i.created_at = st.column_int(6);
    out.push_back(std::move(i));
    return {};
  });
  if (auto r = track(std::move(scanned)); !r) return unexpected(r.error());
  return out;
}

Outcome<void> StateStore::drop_intent(std::int64_t id) {
  std::lock_guard lock(mutex_);
  return track(delete_intent(db_, id));
}

Outcome<void> StateStore::insert_key(const Key& key, std::int64_t intent_id, const std::string& request_id,
                                     const std::string& used_import_job) {
  std::lock_guard lock(mutex_);
  return track(transaction([&]() -> Outcome<void> {
    if (auto r = insert_key_rows(db_, key); !r) return r;
    if (auto r = mark_applied(db_, request_id); !r) return r;
    if (auto r = mark_job_used(db_, used_import_job); !r) return r;
    return delete_intent(db_, intent_id);
  }));
}

Outcome<std::vector<std::string>> StateStore::approvers(const std::string& request_id) {
  std::lock_guard lock(mutex_);
  Statement st(db_, "SELECT operator FROM approvals WHERE request_id = ? ORDER BY approved_at, rowid");
  st.text(1, request_id);
  std::vector<std::string> names;
  auto r = track(scan(db_, st, "approvals", [&]() -> Outcome<void> {
    names.push_back(st.column_text(0));
    return {};
  }));
  if (!r) return unexpected(r.error());
  return names;
}

Outcome<void> StateStore::insert_restored_key(const Key& key, const std::vector<std::int64_t>& intent_ids) {
  std::lock_guard lock(mutex_);
  return track(transaction([&]() -> Outcome<void> {
    if (auto r = insert_key_rows(db_, key); !r) return r;
    for (auto id : intent_ids)
      if (auto r = delete_intent(db_, id); !r) return r;
    return {};
  }));
}

Outcome<void> StateStore::insert_recovery_bundle(const std::string& id, std::int64_t created_at,
                                                 const std::string& envelope, const std::string& request_id) {
  std::lock_guard lock(mutex_);
  return track(transaction([&]() -> Outcome<void> {
    Statement st(db_, "INSERT INTO recovery_bundles(id, created_at, request_id, envelope) VALUES(?,?,?,?)");
    st.text(1, id).integer(2, created_at).text(3, request_id).text(4, envelope);
    if (auto r = change(db_, st, "insert recovery bundle"); !r) return r;
    return mark_applied(db_, request_id);
  }));
}

Outcome<std::optional<std::string>> StateStore::recovery_bundle(const std::string& id) {
  std::lock_guard lock(mutex_);
  Statement st(db_, "SELECT envelope FROM recovery_bundles WHERE id = ?");
  st.text(1, id);
  auto found = track(read_one(db_, st, "recovery_bundles"));
  if (!found) return unexpected(found.error());
  if (!*found) return std::optional<std::string>{};
  return std::optional<std::string>{st.column_text(0)};
}

Outcome<std::optional<std::string>> StateStore::recovery_bundle_of_request(const std::string& request_id) {
  std::lock_guard lock(mutex_);
  Statement st(db_, "SELECT id FROM recovery_bundles WHERE request_id = ?");
  st.text(1, request_id);
  auto found = track(read_one(db_, st, "recovery_bundles"));
  if (!found) return unexpected(found.error());
  if (!*found) return std::optional<std::string>{};
  return std::optional<std::string>{st.column_text(0)};
}

Outcome<void> StateStore::backup_to(const std::string& destination) {
  // A private file from the start: the copy holds what the state does.
  const int fd = ::open(destination.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return fail(Code::failed_precondition, "cannot create " + destination + ": " + std::strerror(errno));
  ::close(fd);
  sqlite3* out = nullptr;
  if (sqlite3_open_v2(destination.c_str(), &out, SQLITE_OPEN_READWRITE, nullptr) != SQLITE_OK) {
    std::string msg = out ? sqlite3_errmsg(out) : "out of memory";
    sqlite3_close(out);
    ::unlink(destination.c_str());
    return fail(Code::unavailable, "cannot open " + destination + ": " + msg);
  }
  // The online backup API copies a consistent snapshot while the daemon keeps writing. It runs
  // under the store's lock, in one step: the copy is one transaction's view of the database.
  std::string error;
  {
    std::lock_guard lock(mutex_);
    sqlite3_backup* backup = sqlite3_backup_init(out, "main", db_, "main");
    if (!backup) {
      error = sqlite3_errmsg(out);
    } else {
      const int rc = sqlite3_backup_step(backup, -1);
      if (rc != SQLITE_DONE) error = sqlite3_errstr(rc);
      if (sqlite3_backup_finish(backup) != SQLITE_OK && error.empty()) error = sqlite3_errmsg(out);
    }
  }
  if (sqlite3_close(out) != SQLITE_OK && error.empty()) error = "closing the copy failed";
  if (!error.empty()) {
    ::unlink(destination.c_str());
    return fail(Code::unavailable, "state backup to " + destination + " failed: " + error);
  }
  return {};
}

Outcome<void> StateStore::add_version(const std::string& key_name, const KeyVersion& version, std::int64_t intent_id,
                                      const std::string& request_id, const std::string& used_import_job) {
  std::lock_guard lock(mutex_);
  return track(transaction([&]() -> Outcome<void> {
    if (auto r = insert_version(db_, key_name, version); !r) return r;
    Statement up(db_, "UPDATE keys SET current_version = ? WHERE name = ?");
    up.integer(1, version.version).text(2, key_name);
    if (auto r = change(db_, up, "set current version", 1); !r) return r;
    if (auto r = mark_applied(db_, request_id); !r) return r;
    if (auto r = mark_job_used(db_, used_import_job); !r) return r;
    return delete_intent(db_, intent_id);
  }));
}

Outcome<void> StateStore::mark_destroyed(const std::string& key_name, const std::vector<std::uint32_t>& versions,
                                         std::int64_t intent_id) {
  std::lock_guard lock(mutex_);
  return track(transaction([&]() -> Outcome<void> {
    Statement k(db_, "UPDATE keys SET state = 'destroyed', destroy_at = NULL WHERE name = ?");
    k.text(1, key_name);
    if (auto r = change(db_, k, "mark key destroyed", 1); !r) return r;
    for (std::uint32_t version : versions) {
      Statement v(db_, "UPDATE key_versions SET state = 'destroyed' WHERE key_name = ? AND version = ?");
      v.text(1, key_name).integer(2, version);
      if (auto r = change(db_, v, "mark version destroyed", 1); !r) return r;
    }
    // A version row the caller did not know of still has its object: it must not be called destroyed.
    Statement left(db_, "SELECT version FROM key_versions WHERE key_name = ? AND state != 'destroyed' LIMIT 1");
    left.text(1, key_name);
    auto remaining = read_one(db_, left, "key_versions");
    if (!remaining) return unexpected(remaining.error());
    if (*remaining)
      return fail(Code::internal, "key " + key_name + " has version " + std::to_string(left.column_int(0)) +
                                      " in the state database that was not destroyed; nothing was marked destroyed");
    return delete_intent(db_, intent_id);
  }));
}

Outcome<void> StateStore::set_state(const std::string& key_name, KeyState state, std::optional<std::int64_t> destroy_at,
                                    const std::string& request_id) {
  std::lock_guard lock(mutex_);
  return track(transaction([&]() -> Outcome<void> {
    Statement st(db_, "UPDATE keys SET state = ?, destroy_at = ? WHERE name = ?");
    st.text(1, key_state_name(state)).optional(2, destroy_at).text(3, key_name);
    if (auto r = change(db_, st, "set key state", 1); !r) return r;
    return mark_applied(db_, request_id);
  }));
}

Outcome<void> StateStore::set_min_decrypt_version(const std::string& key_name, std::uint32_t version,
                                                  const std::string& request_id) {
  std::lock_guard lock(mutex_);
  return track(transaction([&]() -> Outcome<void> {
    Statement st(db_, "UPDATE keys SET min_decrypt_version = ? WHERE name = ?");
    st.integer(1, version).text(2, key_name);
    if (auto r = change(db_, st, "set minimum decrypt version", 1); !r) return r;
    return mark_applied(db_, request_id);
  }));
}

Outcome<void> StateStore::set_policy(const std::string& key_name, const Policy& policy, const std::string& request_id) {
  std::lock_guard lock(mutex_);
  return track(transaction([&]() -> Outcome<void> {
    Statement st(db_, "UPDATE keys SET policy = ? WHERE name = ?");
    st.text(1, boost::json::serialize(policy_to_json(policy))).text(2, key_name);
    if (auto r = change(db_, st, "set policy", 1); !r) return r;
    return mark_applied(db_, request_id);
  }));
}

Outcome<void> StateStore::set_encryptions(const std::string& key_name, std::uint32_t version, std::uint64_t count) {
  std::lock_guard lock(mutex_);
  // max(): a reservation made from a stale or lower count never lowers the durable one.
  Statement st(db_, "UPDATE key_versions SET encryptions = max(encryptions, ?) WHERE key_name = ? AND version = ?");
  st.integer(1, static_cast<std::int64_t>(count)).text(2, key_name).integer(3, version);
  return track(change(db_, st, "record usage", 1));
}

Outcome<std::uint64_t> StateStore::encryptions(const std::string& key_name, std::uint32_t version) {
  std::lock_guard lock(mutex_);
  Statement st(db_, "SELECT encryptions FROM key_versions WHERE key_name = ? AND version = ?");
  st.text(1, key_name).integer(2, version);
  auto found = track(read_one(db_, st, "key_versions"));
  if (!found) return unexpected(found.error());
  if (!*found)
    return fail(Code::not_found, "the state database has no row for version " + std::to_string(version) + " of key '" +
                                     key_name + "'");
  return static_cast<std::uint64_t>(st.column_int(0));
}

Outcome<std::string> StateStore::meta(const std::string& name, const std::string& initial) {
  std::lock_guard lock(mutex_);
  Statement ins(db_, "INSERT OR IGNORE INTO meta(name, value) VALUES(?, ?)");
  ins.text(1, name).text(2, initial);
  if (auto r = track(change(db_, ins, "write metadata")); !r) return unexpected(r.error());
  Statement st(db_, "SELECT value FROM meta WHERE name = ?");
  st.text(1, name);
  auto found = track(read_one(db_, st, "meta"));
  if (!found) return unexpected(found.error());
  if (!*found) return fail(Code::internal, "state database: meta has no " + name + " right after it was written");
  return st.column_text(0);
}

Outcome<void> StateStore::insert_request(const StoredRequest& r) {
  std::lock_guard lock(mutex_);
  Statement st(db_,
               "INSERT INTO admin_requests(id, operation, params, state, created_at, expires_at, required, challenge,"
               " proposer_uid, outcome) VALUES(?,?,?,?,?,?,?,?,?,?)");
  st.text(1, r.id).text(2, r.operation).text(3, r.params).text(4, r.state).integer(5, r.created_at);
  st.integer(6, r.expires_at).integer(7, r.required).text(8, r.challenge).integer(9, r.proposer_uid).optional(10, r.outcome);
  return track(change(db_, st, "insert request"));
}

namespace {

// An admin_requests row as kRequestColumns selects it (approvals are read on their own).
constexpr const char* kRequestColumns =
    "SELECT id, operation, params, state, created_at, expires_at, required, challenge, proposer_uid, outcome";
StoredRequest request_of_row(Statement& st) {
  StoredRequest r;
  r.id = st.column_text(0);
  r.operation = st.column_text(1);
  r.params = st.column_text(2);
  r.state = st.column_text(3);
  r.created_at = st.column_int(4);
  r.expires_at = st.column_int(5);
  r.required = static_cast<std::uint32_t>(st.column_int(6));
  r.challenge = st.column_text(7);
  r.proposer_uid = static_cast<std::uint32_t>(st.column_int(8));
  if (!st.column_null(9)) r.outcome = st.column_text(9);
  return r;
}

// One request and its approvals, read on db (inside the caller's transaction, if any).
Outcome<StoredRequest> read_request(sqlite3* db, const std::string& request_id) {
  StoredRequest r;
  bool found = false;
  Statement st(db, (std::string(kRequestColumns) + " FROM admin_requests WHERE id = ?").c_str());
  st.text(1, request_id);
  auto scanned = scan(db, st, "admin_requests", [&]() -> Outcome<void> {
    found = true;
    r = request_of_row(st);
    return {};
  });
  if (!scanned) return unexpected(scanned.error());
  if (!found) return fail(Code::not_found, "no admin request " + request_id);
  Statement ap(db, "SELECT operator, signature, approved_at FROM approvals WHERE request_id = ? ORDER BY approved_at, rowid");
  ap.text(1, request_id);
  auto approvals = scan(db, ap, "approvals", [&]() -> Outcome<void> {
    r.approvals.push_back(StoredApproval{ap.column_text(0), ap.column_text(1), ap.column_int(2)});
    return {};
  });
  if (!approvals) return unexpected(approvals.error());
  return r;
}

}  // namespace

Outcome<StoredRequest> StateStore::load_request(const std::string& request_id) {
  std::lock_guard lock(mutex_);
  StoredRequest out;
  auto load = [&]() -> Outcome<void> {
    auto r = read_request(db_, request_id);
    if (!r) return unexpected(r.error());
    out = std::move(*r);
    return {};
  };
  // A deferred transaction: the request and its approvals from one snapshot.
  if (auto r = exec("BEGIN;"); !r) return unexpected(track(std::move(r)).error());
  Outcome<void> result = load();
  if (result) result = exec("COMMIT;");
  if (!result) (void)exec("ROLLBACK;");
  if (auto r = track(std::move(result)); !r) return unexpected(r.error());
  return out;
}

Outcome<StoredRequest> StateStore::approve_request(const std::string& request_id, const StoredApproval& a,
                                                   const ApprovalDecision& decide) {
  std::lock_guard lock(mutex_);
  StoredRequest stored;
  // BEGIN IMMEDIATE holds the database's write lock from the read to the commit.
  auto run = transaction([&]() -> Outcome<void> {
    auto current = read_request(db_, request_id);
    if (!current) return unexpected(current.error());
    stored = std::move(*current);
    auto next = decide(stored);
    if (!next) return unexpected(next.error());
    Statement ins(db_, "INSERT INTO approvals(request_id, operator, signature, approved_at) VALUES(?,?,?,?)");
    ins.text(1, request_id).text(2, a.operator_name).text(3, a.signature).integer(4, a.approved_at);
    if (auto r = change(db_, ins, "insert approval"); !r) return r;
    Statement up(db_, "UPDATE admin_requests SET state = ? WHERE id = ?");
    up.text(1, *next).text(2, request_id);
    if (auto r = change(db_, up, "update request", 1); !r) return r;
    stored.approvals.push_back(a);
    stored.state = *next;
    return {};
  });
  if (auto r = track(std::move(run)); !r) return unexpected(r.error());
  return stored;
}

Outcome<void> StateStore::finish_request(const std::string& request_id, const std::string& state,
                                         const std::optional<std::string>& outcome) {
  std::lock_guard lock(mutex_);
  Statement up(db_, "UPDATE admin_requests SET state = ?, outcome = ? WHERE id = ?");
  up.text(1, state).optional(2, outcome).text(3, request_id);
  return track(change(db_, up, "update request", 1));
}

Outcome<std::vector<StoredRequest>> StateStore::load_requests() {
  std::lock_guard lock(mutex_);
  std::vector<StoredRequest> out;
  auto load = [&]() -> Outcome<void> {
    Statement st(db_, (std::string(kRequestColumns) + " FROM admin_requests ORDER BY created_at, id").c_str());
    auto scanned = scan(db_, st, "admin_requests", [&]() -> Outcome<void> {
      out.push_back(request_of_row(st));
      return {};
    });
    if (!scanned) return scanned;
    Statement ap(db_, "SELECT request_id, operator, signature, approved_at FROM approvals ORDER BY approved_at, operator");
    return scan(db_, ap, "approvals", [&]() -> Outcome<void> {
      auto id = ap.column_text(0);
      for (auto& r : out)
        if (r.id == id) r.approvals.push_back(StoredApproval{ap.column_text(1), ap.column_text(2), ap.column_int(3)});
      return {};
    });
  };
  if (auto r = track(load()); !r) return unexpected(r.error());
  return out;
}

Outcome<void> StateStore::insert_job(const StoredJob& j, const std::string& request_id) {
  std::lock_guard lock(mutex_);
  return track(transaction([&]() -> Outcome<void> {
    Statement st(db_,
                 "INSERT INTO import_jobs(id, key_name, algorithm, method, transport_key, state, created_at, expires_at,"
                 " object_id, object_label, public_key, policy) VALUES(?,?,?,?,?,?,?,?,?,?,?,?)");
    st.text(1, j.id).text(2, j.key_name).text(3, j.algorithm).text(4, j.method).optional(5, j.transport_key);
    st.text(6, j.state).integer(7, j.created_at).integer(8, j.expires_at).blob(9, j.wrapping.id);
    st.text(10, j.wrapping.label).optional(11, j.public_key).text(12, j.policy);
    if (auto r = change(db_, st, "insert import job"); !r) return r;
    return mark_applied(db_, request_id);
  }));
}

Outcome<void> StateStore::set_job_state(const std::string& id, const std::string& state) {
  std::lock_guard lock(mutex_);
  Statement st(db_, "UPDATE import_jobs SET state = ? WHERE id = ?");
  st.text(1, state).text(2, id);
  return track(change(db_, st, "update import job", 1));
}

Outcome<std::vector<StoredJob>> StateStore::load_jobs() {
  std::lock_guard lock(mutex_);
  Statement st(db_,
               "SELECT id, key_name, algorithm, method, transport_key, state, created_at, expires_at, object_id,"
               " object_label, public_key, policy FROM import_jobs ORDER BY created_at, id");
  std::vector<StoredJob> out;
  auto scanned = scan(db_, st, "import_jobs", [&]() -> Outcome<void> {
    StoredJob j;
    j.id = st.column_text(0);
    j.key_name = st.column_text(1);
    j.algorithm = st.column_text(2);
    j.method = st.column_text(3);
    if (!st.column_null(4)) j.transport_key = st.column_text(4);
    j.state = st.column_text(5);
    j.created_at = st.column_int(6);
    j.expires_at = st.column_int(7);
    j.wrapping.id = st.column_blob(8);
    j.wrapping.label = st.column_text(9);
    if (!st.column_null(10)) j.public_key = st.column_text(10);
    j.policy = st.column_text(11);
    out.push_back(std::move(j));
    return {};
  });
  if (auto r = track(std::move(scanned)); !r) return unexpected(r.error());
  return out;
}

Outcome<bool> StateStore::applied(const std::string& request_id) {
  std::lock_guard lock(mutex_);
  Statement st(db_, "SELECT 1 FROM applied_requests WHERE request_id = ?");
  st.text(1, request_id);
  // A read error is not "not applied": that answer would run a committed operation again.
  return track(read_one(db_, st, "applied_requests"));
}

}  // namespace custody::core
