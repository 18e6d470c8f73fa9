#pragma once
// Versioned schema migrations for the PostgreSQL state store. The schema is the SQLite store's
// (same tables, columns and meaning; version n here is version n there), so a host's SQLite state
// can be copied table by table. A one-row table, schema_version, records how far a database is.
#include <cstddef>

#include "daemon/core/state/postgres/pg_connection.h"

namespace custody::core {

// The schema version this code writes.
std::size_t pg_latest_schema_version();

// Applies each missing migration in its own transaction, serialised across daemons by a
// transaction-scoped advisory lock (a fleet starting at once migrates once). Refuses a database
// whose schema is newer than this code's, changing nothing.
Outcome<void> pg_migrate(PgConnection& conn);

// The database's schema version (0: none yet).
Outcome<std::size_t> pg_schema_version(PgConnection& conn);

}  // namespace custody::core
