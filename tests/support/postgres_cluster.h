#pragma once
// A scratch PostgreSQL 15 cluster in a temporary directory for tests: initdb + pg_ctl from
// Debian's postgresql package, a Unix socket in that directory and no TCP, a superuser with a
// password (scram-sha-256, so the store's password file is exercised), stopped and removed when
// the object goes away. PostgreSQL refuses to run as root, and tests run as root in CI: the
// cluster's programs then run as nobody (uid/gid 65534) in a directory handed to nobody.
#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "common/expected.h"
#include "daemon/core/state/postgres/pg_connection.h"
#include "tests/support/softhsm_token.h"

namespace custody::test {

class PostgresCluster {
 public:
  // Where initdb and pg_ctl live (CUSTODY_PG_BINDIR overrides /usr/lib/postgresql/15/bin).
  static std::string bin_dir();
  // Why no cluster can be made here (the binaries are missing), or empty.
  static std::string unavailable_reason();

  // initdb + start; the error carries the tool's output.
  static Expected<std::unique_ptr<PostgresCluster>, std::string> start();
  ~PostgresCluster();
  PostgresCluster(const PostgresCluster&) = delete;
  PostgresCluster& operator=(const PostgresCluster&) = delete;

  // Stops the server (the database becomes unreachable) and starts it again on the same data.
  Expected<void, std::string> stop();
  Expected<void, std::string> restart();

  // A new empty database; with an ICU collation where the server has ICU (so a query that relies on
  // the database's default sort order sorts differently from the byte order it expects).
  Expected<void, std::string> create_database(const std::string& name);
  // Settings for the store: dsn over the socket, and the superuser's password file (0600).
  core::PgSettings settings(const std::string& database) const;
  // A conninfo without a password (for tests of the settings).
  std::string dsn(const std::string& database) const;
  const std::string& password_file() const { return password_file_; }
  const std::string& dir() const { return dir_.path(); }
  // Runs one SQL statement as the superuser on database; the error is libpq's.
  Expected<void, std::string> execute(const std::string& database, const std::string& sql) const;

 private:
  PostgresCluster() = default;
  // Runs a cluster program (as nobody when root) with its output in dir/<log>; returns it on failure.
  Expected<void, std::string> run_tool(const std::vector<std::string>& argv, const std::string& log) const;
  // A child that stops the server and removes the directory if this process dies without doing
  // so (killed by a timeout, a signal, a closed pipe): no server outlives its test.
  Expected<void, std::string> start_reaper();
  void stop_reaper();
  TempDir dir_;
  std::string data_dir_;
  std::string password_file_;
  bool running_ = false;
  pid_t reaper_ = -1;
  int reaper_pipe_ = -1;  // write end; the reaper acts when it reads end-of-file
};

}  // namespace custody::test
