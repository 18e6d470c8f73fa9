#include "daemon/core/state/postgres/pg_migrations.h"

#include <iterator>
#include <string>

namespace custody::core {
namespace {

// Names sort byte-wise (COLLATE "C") whatever the database's locale: load_keys matches version
// rows to keys by walking both in name order, as the SQLite store does with its binary collation.
constexpr const char* kMigrations[] = {
    R"sql(
CREATE TABLE keys (
  name TEXT COLLATE "C" PRIMARY KEY,
  algorithm TEXT NOT NULL,
  state TEXT NOT NULL,
  current_version BIGINT NOT NULL,
  min_decrypt_version BIGINT NOT NULL DEFAULT 1,
  destroy_at BIGINT,
  policy TEXT NOT NULL,
  created_at BIGINT NOT NULL,
  rotation_period BIGINT,
  usage_limit BIGINT NOT NULL
);
CREATE TABLE key_versions (
  key_name TEXT COLLATE "C" NOT NULL REFERENCES keys(name),
  version BIGINT NOT NULL,
  state TEXT NOT NULL,
  origin TEXT NOT NULL,
  reason TEXT NOT NULL,
  created_at BIGINT NOT NULL,
  kcv TEXT,
  object_id BYTEA NOT NULL,
  object_label TEXT NOT NULL,
  encryptions BIGINT NOT NULL DEFAULT 0,
  PRIMARY KEY (key_name, version)
);
CREATE TABLE intents (
  id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  kind TEXT NOT NULL,
  key_name TEXT COLLATE "C" NOT NULL,
  version BIGINT NOT NULL,
  object_id BYTEA,
  object_label TEXT,
  created_at BIGINT NOT NULL
);
)sql",
    R"sql(
CREATE TABLE meta (
  name TEXT COLLATE "C" PRIMARY KEY,
  value TEXT NOT NULL
);
CREATE TABLE admin_requests (
  id TEXT COLLATE "C" PRIMARY KEY,
  operation TEXT NOT NULL,
  params TEXT NOT NULL,
  state TEXT NOT NULL,
  created_at BIGINT NOT NULL,
  expires_at BIGINT NOT NULL,
  required BIGINT NOT NULL,
  challenge TEXT NOT NULL,
  proposer_uid BIGINT NOT NULL,
  outcome TEXT
);
CREATE TABLE approvals (
  request_id TEXT COLLATE "C" NOT NULL REFERENCES admin_requests(id),
  operator TEXT COLLATE "C" NOT NULL,
  signature TEXT NOT NULL,
  approved_at BIGINT NOT NULL,
  PRIMARY KEY (request_id, operator)
);
CREATE TABLE applied_requests (
  request_id TEXT COLLATE "C" PRIMARY KEY,
  applied_at BIGINT NOT NULL
);
)sql",
    R"sql(
CREATE TABLE import_jobs (
  id TEXT COLLATE "C" PRIMARY KEY,
  key_name TEXT COLLATE "C" NOT NULL,
  algorithm TEXT NOT NULL,
  method TEXT NOT NULL,
  transport_key TEXT,
  state TEXT NOT NULL,
  created_at BIGINT NOT NULL,
  expires_at BIGINT NOT NULL,
  object_id BYTEA,
  object_label TEXT,
  public_key TEXT,
  policy TEXT NOT NULL
);
)sql",
    // Recovery (CONTRACT §11): which keys may be backed up, and the bundles made. approvals.seq
    // stands in for SQLite's rowid: approvals made in the same second list in the order made.
    R"sql(
ALTER TABLE keys ADD COLUMN recovery BIGINT NOT NULL DEFAULT 0;
CREATE TABLE recovery_bundles (
  id TEXT COLLATE "C" PRIMARY KEY,
  created_at BIGINT NOT NULL,
  request_id TEXT COLLATE "C" NOT NULL,
  envelope TEXT NOT NULL
);
ALTER TABLE approvals ADD COLUMN seq BIGINT GENERATED ALWAYS AS IDENTITY;
)sql",
    // Which daemon (its host id) recorded an intent, and which runs a request past its quorum: a
    // member recovers its own and those of members that are gone (nobody holds their member
    // lease), never a live member's.
    R"sql(
ALTER TABLE intents ADD COLUMN owner TEXT COLLATE "C" NOT NULL DEFAULT '';
ALTER TABLE admin_requests ADD COLUMN executor TEXT COLLATE "C" NOT NULL DEFAULT '';
)sql",
};

// pg_advisory_xact_lock key for migrations: 'cust' 'migr' in ASCII.
constexpr const char* kMigrationLock = "SELECT pg_advisory_xact_lock(1668641652, 1835622258)";

constexpr const char* kCreateVersionTable =
    "CREATE TABLE IF NOT EXISTS schema_version ("
    " singleton BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),"
    " version BIGINT NOT NULL)";

Outcome<std::size_t> read_version(PgConnection& conn) {
  auto r = conn.query("reading the schema version", "SELECT version FROM schema_version");
  if (!r) return unexpected(r.error());
  if (r->rows() == 0) return std::size_t{0};
  return static_cast<std::size_t>(r->integer(0, 0));
}

// One step: under the lock, reads the version and applies the next migration if one is due.
// Returns the version the database is at after the step.
Outcome<std::size_t> step(PgConnection& conn) {
  constexpr std::size_t latest = std::size(kMigrations);
  auto steps = [&]() -> Outcome<std::size_t> {
    if (auto r = conn.query("locking for migration", kMigrationLock); !r) return unexpected(r.error());
    if (auto r = conn.script("creating schema_version", kCreateVersionTable); !r) return unexpected(r.error());
    auto current = read_version(conn);
    if (!current) return current;
    if (*current > latest)
      return fail(Code::internal, "the state database is from a newer custodyd (schema " + std::to_string(*current) +
                                      ", this custodyd knows " + std::to_string(latest) + ")");
    if (*current == latest) return current;
    const std::string what = "applying schema migration " + std::to_string(*current + 1);
    if (auto r = conn.script(what, kMigrations[*current]); !r) return unexpected(r.error());
    auto set = conn.query(what,
                          "INSERT INTO schema_version(singleton, version) VALUES(TRUE, $1)"
                          " ON CONFLICT (singleton) DO UPDATE SET version = EXCLUDED.version",
                          {PgParam::integer(static_cast<std::int64_t>(*current + 1))});
    if (!set) return unexpected(set.error());
    return *current + 1;
  };
  if (auto r = conn.script("beginning a migration", "BEGIN"); !r) return unexpected(r.error());
  auto result = steps();
  if (result) {
    if (auto c = conn.script("committing a migration", "COMMIT"); !c) return unexpected(c.error());
  } else {
    (void)conn.script("rolling back a migration", "ROLLBACK");
  }
  return result;
}

}  // namespace

std::size_t pg_latest_schema_version() { return std::size(kMigrations); }

Outcome<void> pg_migrate(PgConnection& conn) {
  std::size_t before = static_cast<std::size_t>(-1);
  for (;;) {
    auto at = step(conn);
    if (!at) return unexpected(at.error());
    if (*at == before || *at == pg_latest_schema_version()) return {};
    before = *at;
  }
}

Outcome<std::size_t> pg_schema_version(PgConnection& conn) {
  auto exists = conn.query("reading the schema version", "SELECT to_regclass('schema_version') IS NOT NULL");
  if (!exists) return unexpected(exists.error());
  if (exists->text(0, 0) != "t") return std::size_t{0};
  return read_version(conn);
}

}  // namespace custody::core
