#pragma once
// custodyctl admin migrate-state: moves one host's SQLite state into the PostgreSQL database a
// fleet shares (docs/fleet.md). Offline: run it with custodyd stopped.
#include <string>

namespace custody::cli {

struct MigrateStateOptions {
  std::string from;           // the SQLite state.db
  std::string dsn;            // libpq conninfo of the target (no password in it)
  std::string password_file;  // the target's password, or empty
};

// Copies every row in foreign-key order in one transaction. Refuses a source at another schema
// version than the target, a source with unfinished key changes (intents), and a target that
// already holds state. Exit status as custodyctl's: 0 done, 1 refused or failed.
int cmd_migrate_state(const MigrateStateOptions& o);

}  // namespace custody::cli
