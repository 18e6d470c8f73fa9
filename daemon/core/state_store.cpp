#include "daemon/core/state_store.h"

#include <sqlite3.h>

#include <boost/json.hpp>

#include "common/hex.h"

namespace custody::core {
namespace {

constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS keys (
  name TEXT PRIMARY KEY,
  algorithm TEXT NOT NULL,
  state TEXT NOT NULL,
  current_version INTEGER NOT NULL,
  min_decrypt_version INTEGER NOT NULL DEFAULT 1,
  destroy_at INTEGER,
  policy TEXT NOT NULL,
  created_at INTEGER NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS key_versions (
  key_name TEXT NOT NULL REFERENCES keys(name),
  version INTEGER NOT NULL,
  state TEXT NOT NULL,
  origin TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  kcv TEXT,
  object_id BLOB NOT NULL,
  object_label TEXT NOT NULL,
  PRIMARY KEY (key_name, version)
) STRICT;
)sql";

// A prepared statement that finalizes itself.
class Statement {
 public:
  Statement(sqlite3* db, const char* sql) { rc_ = sqlite3_prepare_v2(db, sql, -1, &stmt_, nullptr); }
  ~Statement() { sqlite3_finalize(stmt_); }
  bool ok() const { return rc_ == SQLITE_OK; }
  Statement& text(int i, const std::string& s) {
    sqlite3_bind_text(stmt_, i, s.data(), static_cast<int>(s.size()), SQLITE_TRANSIENT);
    return *this;
  }
  Statement& blob(int i, const Bytes& b) {
    sqlite3_bind_blob(stmt_, i, b.data(), static_cast<int>(b.size()), SQLITE_TRANSIENT);
    return *this;
  }
  Statement& integer(int i, std::int64_t v) {
    sqlite3_bind_int64(stmt_, i, v);
    return *this;
  }
  Statement& null(int i) {
    sqlite3_bind_null(stmt_, i);
    return *this;
  }
  int step() { return sqlite3_step(stmt_); }
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
  sqlite3_stmt* stmt_ = nullptr;
  int rc_;
};

Error db_error(sqlite3* db, const char* what) {
  return Error{Code::unavailable, std::string("state database error during ") + what + ": " + sqlite3_errmsg(db)};
}

Outcome<void> insert_version(sqlite3* db, const std::string& key_name, const KeyVersion& v) {
  Statement st(db,
               "INSERT INTO key_versions(key_name, version, state, origin, created_at, kcv, object_id, object_label)"
               " VALUES(?,?,?,?,?,?,?,?)");
  if (!st.ok()) return unexpected(db_error(db, "insert version"));
  st.text(1, key_name).integer(2, v.version).text(3, v.state).text(4, v.origin).integer(5, v.created_at);
  if (v.kcv) st.text(6, *v.kcv);
  else st.null(6);
  st.blob(7, v.object.id).text(8, v.object.label);
  if (st.step() != SQLITE_DONE) return unexpected(db_error(db, "insert version"));
  return {};
}

}  // namespace

Expected<std::unique_ptr<StateStore>, std::string> StateStore::open(const std::string& path) {
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX,
                      nullptr) != SQLITE_OK) {
    std::string msg = db ? sqlite3_errmsg(db) : "out of memory";
    sqlite3_close(db);
    return unexpected("cannot open state database " + path + ": " + msg);
  }
  std::unique_ptr<StateStore> store(new StateStore(db));
  for (const char* pragma : {"PRAGMA journal_mode=WAL;", "PRAGMA synchronous=FULL;", "PRAGMA foreign_keys=ON;",
                             "PRAGMA busy_timeout=5000;"}) {
    if (auto r = store->exec(pragma); !r) return unexpected(r.error().message);
  }
  if (auto r = store->exec(kSchema); !r) return unexpected(r.error().message);
  return store;
}

StateStore::~StateStore() { sqlite3_close(db_); }

Outcome<void> StateStore::exec(const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db_, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = err ? err : "unknown error";
    sqlite3_free(err);
    return fail(Code::unavailable, "state database error: " + msg);
  }
  return {};
}

Outcome<std::vector<Key>> StateStore::load_keys() {
  std::lock_guard lock(mutex_);
  std::vector<Key> keys;
  Statement ks(db_,
               "SELECT name, algorithm, state, current_version, min_decrypt_version, destroy_at, policy, created_at"
               " FROM keys ORDER BY name");
  if (!ks.ok()) return unexpected(db_error(db_, "load keys"));
  while (ks.step() == SQLITE_ROW) {
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
    auto policy = ec ? Outcome<Policy>(fail(Code::internal, "unreadable policy")) : parse_policy(pv);
    if (!policy) return fail(Code::internal, "key " + k.name + ": stored policy: " + policy.error().message);
    k.policy = std::move(*policy);
    k.created_at = ks.column_int(7);
    keys.push_back(std::move(k));
  }
  Statement vs(db_,
               "SELECT key_name, version, state, origin, created_at, kcv, object_id, object_label"
               " FROM key_versions ORDER BY key_name, version");
  if (!vs.ok()) return unexpected(db_error(db_, "load versions"));
  std::size_t ki = 0;
  while (vs.step() == SQLITE_ROW) {
    auto name = vs.column_text(0);
    while (ki < keys.size() && keys[ki].name < name) ++ki;
    if (ki == keys.size() || keys[ki].name != name) return fail(Code::internal, "version row for unknown key " + name);
    KeyVersion v;
    v.version = static_cast<std::uint32_t>(vs.column_int(1));
    v.state = vs.column_text(2);
    v.origin = vs.column_text(3);
    v.created_at = vs.column_int(4);
    if (!vs.column_null(5)) v.kcv = vs.column_text(5);
    v.object.id = vs.column_blob(6);
    v.object.label = vs.column_text(7);
    if (v.version != keys[ki].versions.size() + 1)
      return fail(Code::internal, "key " + name + " has a gap in its versions");
    keys[ki].versions.push_back(std::move(v));
  }
  return keys;
}

Outcome<void> StateStore::insert_key(const Key& key) {
  std::lock_guard lock(mutex_);
  if (auto r = exec("BEGIN IMMEDIATE;"); !r) return r;
  auto rollback = [&](Error e) -> Outcome<void> {
    (void)exec("ROLLBACK;");
    return unexpected(std::move(e));
  };
  Statement st(db_,
               "INSERT INTO keys(name, algorithm, state, current_version, min_decrypt_version, destroy_at, policy, created_at)"
               " VALUES(?,?,?,?,?,?,?,?)");
  if (!st.ok()) return rollback(db_error(db_, "insert key"));
  st.text(1, key.name).text(2, algorithm_name(key.algorithm)).text(3, key_state_name(key.state));
  st.integer(4, key.current_version).integer(5, key.min_decrypt_version);
  if (key.destroy_at) st.integer(6, *key.destroy_at);
  else st.null(6);
  st.text(7, boost::json::serialize(policy_to_json(key.policy))).integer(8, key.created_at);
  if (st.step() != SQLITE_DONE) return rollback(db_error(db_, "insert key"));
  for (const auto& v : key.versions)
    if (auto r = insert_version(db_, key.name, v); !r) return rollback(r.error());
  if (auto r = exec("COMMIT;"); !r) return rollback(r.error());
  return {};
}

Outcome<void> StateStore::add_version(const std::string& key_name, const KeyVersion& version) {
  std::lock_guard lock(mutex_);
  if (auto r = exec("BEGIN IMMEDIATE;"); !r) return r;
  auto rollback = [&](Error e) -> Outcome<void> {
    (void)exec("ROLLBACK;");
    return unexpected(std::move(e));
  };
  if (auto r = insert_version(db_, key_name, version); !r) return rollback(r.error());
  Statement up(db_, "UPDATE keys SET current_version = ? WHERE name = ?");
  if (!up.ok()) return rollback(db_error(db_, "set current version"));
  up.integer(1, version.version).text(2, key_name);
  if (up.step() != SQLITE_DONE) return rollback(db_error(db_, "set current version"));
  if (auto r = exec("COMMIT;"); !r) return rollback(r.error());
  return {};
}

}  // namespace custody::core
