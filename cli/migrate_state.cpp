#include "cli/migrate_state.h"

#include <sqlite3.h>

#include <cstdint>
#include <iostream>
#include <memory>
#include <vector>

#include "daemon/core/state/postgres/pg_connection.h"
#include "daemon/core/state/postgres/pg_migrations.h"
#include "daemon/core/state/postgres/postgres_state_store.h"

namespace custody::cli {
namespace {

using core::PgConnection;
using core::PgParam;

// Parents before children; approvals in the order they were made (rowid), so the target's
// generated approvals.seq keeps the order approvers() reports.
struct Table {
  const char* name;
  const char* order_by;
};
constexpr Table kTables[] = {{"meta", "name"},
                             {"keys", "name"},
                             {"key_versions", "key_name, version"},
                             {"admin_requests", "id"},
                             {"approvals", "rowid"},
                             {"applied_requests", "request_id"},
                             {"import_jobs", "id"},
                             {"recovery_bundles", "id"}};

struct SqliteCloser {
  void operator()(sqlite3* db) const { sqlite3_close(db); }
};
struct StatementCloser {
  void operator()(sqlite3_stmt* s) const { sqlite3_finalize(s); }
};
using Db = std::unique_ptr<sqlite3, SqliteCloser>;
using Statement = std::unique_ptr<sqlite3_stmt, StatementCloser>;

int refuse(const std::string& why) {
  std::cerr << "custodyctl admin migrate-state: " << why << "\nNothing was changed.\n";
  return 1;
}

Expected<Statement, std::string> prepare(sqlite3* db, const std::string& sql) {
  sqlite3_stmt* s = nullptr;
  if (sqlite3_prepare_v2(db, sql.c_str(), -1, &s, nullptr) != SQLITE_OK)
    return unexpected(std::string(sqlite3_errmsg(db)) + " (" + sql + ")");
  return Statement(s);
}

Expected<std::int64_t, std::string> sqlite_integer(sqlite3* db, const std::string& sql) {
  auto s = prepare(db, sql);
  if (!s) return unexpected(s.error());
  if (sqlite3_step(s->get()) != SQLITE_ROW) return unexpected(std::string(sqlite3_errmsg(db)) + " (" + sql + ")");
  return sqlite3_column_int64(s->get(), 0);
}

// The target's columns that take a value (not generated, not identity), in table order.
core::Outcome<std::vector<std::string>> target_columns(PgConnection& pg, const char* table) {
  auto r = pg.query("listing the columns of " + std::string(table),
                    "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema()"
                    " AND table_name = $1 AND is_generated = 'NEVER' AND is_identity = 'NO' ORDER BY ordinal_position",
                    {PgParam::text(table)});
  if (!r) return unexpected(r.error());
  std::vector<std::string> columns;
  for (int i = 0; i < r->rows(); ++i) columns.push_back(r->text(i, 0));
  return columns;
}

// Copies one table; the number of rows copied.
Expected<std::int64_t, std::string> copy_table(sqlite3* db, PgConnection& pg, const Table& table) {
  auto columns = target_columns(pg, table.name);
  if (!columns) return unexpected(columns.error().message);
  std::string list, placeholders;
  for (std::size_t i = 0; i < columns->size(); ++i) {
    list += (i ? ", " : "") + (*columns)[i];
    placeholders += (i ? ", $" : "$") + std::to_string(i + 1);
  }
  auto select = prepare(db, "SELECT " + list + " FROM " + table.name + " ORDER BY " + table.order_by);
  if (!select) return unexpected(select.error());
  const std::string insert = "INSERT INTO " + std::string(table.name) + " (" + list + ") VALUES (" + placeholders + ")";
  std::int64_t rows = 0;
  for (;;) {
    const int step = sqlite3_step(select->get());
    if (step == SQLITE_DONE) break;
    if (step != SQLITE_ROW) return unexpected("reading table " + std::string(table.name) + ": " + sqlite3_errmsg(db));
    std::vector<PgParam> params;
    for (int c = 0; c < static_cast<int>(columns->size()); ++c) {
      switch (sqlite3_column_type(select->get(), c)) {
        case SQLITE_NULL: params.push_back(PgParam::null()); break;
        case SQLITE_BLOB: {
          const auto* p = static_cast<const std::uint8_t*>(sqlite3_column_blob(select->get(), c));
          params.push_back(PgParam::bytes(Bytes(p, p + sqlite3_column_bytes(select->get(), c))));
          break;
        }
        default: {
          const auto* text = reinterpret_cast<const char*>(sqlite3_column_text(select->get(), c));
          params.push_back(PgParam::text(std::string(text, static_cast<std::size_t>(sqlite3_column_bytes(select->get(), c)))));
        }
      }
    }
    if (auto r = pg.query("copying a row of " + std::string(table.name), insert.c_str(), params); !r)
      return unexpected(r.error().message);
    ++rows;
  }
  return rows;
}

}  // namespace

int cmd_migrate_state(const MigrateStateOptions& o) {
  sqlite3* raw = nullptr;
  const int opened = sqlite3_open_v2(o.from.c_str(), &raw, SQLITE_OPEN_READONLY, nullptr);
  Db db(raw);
  if (opened != SQLITE_OK) return refuse("cannot open " + o.from + ": " + (raw ? sqlite3_errmsg(raw) : "out of memory"));
  // A snapshot of the source for the whole copy.
  if (sqlite3_exec(db.get(), "BEGIN", nullptr, nullptr, nullptr) != SQLITE_OK)
    return refuse("cannot read " + o.from + ": " + sqlite3_errmsg(db.get()));
  auto version = sqlite_integer(db.get(), "PRAGMA user_version");
  if (!version) return refuse("cannot read the schema version of " + o.from + ": " + version.error());
  const auto latest = static_cast<std::int64_t>(core::pg_latest_schema_version());
  if (*version != latest)
    return refuse(o.from + " is at schema version " + std::to_string(*version) + ", the PostgreSQL store at " +
                  std::to_string(latest) + ": start this custodyd version once on it (or use the matching custodyctl)");
  auto intents = sqlite_integer(db.get(), "SELECT count(*) FROM intents");
  if (!intents) return refuse("cannot read " + o.from + ": " + intents.error());
  if (*intents != 0)
    return refuse(o.from + " holds " + std::to_string(*intents) +
                  " unfinished key changes: start custodyd once on it so they are finished, stop it, then migrate");

  const core::PgSettings settings{o.dsn, o.password_file};
  // Brings the target's schema to the same version (a no-op when it is there already).
  if (auto store = core::PostgresStateStore::open(settings, "migrate-state"); !store) return refuse("the target: " + store.error());
  auto pg = PgConnection::open(settings);
  if (!pg) return refuse("the target: " + pg.error().message);
  if (auto r = (*pg)->script("beginning the copy", "BEGIN ISOLATION LEVEL SERIALIZABLE"); !r)
    return refuse(r.error().message);
  auto rollback = [&](const std::string& why) {
    (void)(*pg)->script("rolling back the copy", "ROLLBACK");
    return refuse(why);
  };
  for (const char* table : {"meta", "keys", "key_versions", "intents", "admin_requests", "approvals",
                            "applied_requests", "import_jobs", "recovery_bundles"}) {
    auto r = (*pg)->query("checking that the target is empty",
                          (std::string("SELECT 1 FROM ") + table + " LIMIT 1").c_str());
    if (!r) return rollback(r.error().message);
    if (r->rows() != 0)
      return rollback(std::string("the target already holds state (table ") + table +
                      " is not empty): migrate into a fresh database only");
  }
  for (const auto& table : kTables) {
    auto rows = copy_table(db.get(), **pg, table);
    if (!rows) return rollback(rows.error());
    std::cout << table.name << ": " << *rows << " rows\n";
  }
  if (auto r = (*pg)->script("committing the copy", "COMMIT"); !r) return refuse(r.error().message);
  std::cout << "migrated " << o.from << " into the PostgreSQL state store; point every custodyd at it with "
            << "state: {backend: postgresql, dsn: ...}\n";
  return 0;
}

}  // namespace custody::cli
