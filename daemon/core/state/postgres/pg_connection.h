#pragma once
// One libpq connection with errors as values: every query result is checked, a broken connection
// is an error (never an empty result), and the next call reconnects, so service resumes by itself
// when the database returns.
//
// Settings: a libpq conninfo (host, dbname, sslmode, sslrootcert, ... are passed through as
// written) and a password read from a file (a systemd credential is a file too). A password
// written inside the conninfo is refused: it would end up in configs, logs and `ps`.
#include <libpq-fe.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include "common/secure_buffer.h"
#include "daemon/core/error.h"

namespace custody::core {

struct PgSettings {
  std::string dsn;            // libpq conninfo, without a password
  std::string password_file;  // empty: none (peer, cert or trust authentication)
};

// A query parameter: text, raw bytes (sent as binary bytea) or NULL.
struct PgParam {
  std::optional<std::string> value;
  bool binary = false;

  static PgParam text(std::string s) { return PgParam{std::move(s), false}; }
  static PgParam integer(std::int64_t v) { return PgParam{std::to_string(v), false}; }
  static PgParam bytes(const Bytes& b) { return PgParam{std::string(b.begin(), b.end()), true}; }
  static PgParam null() { return PgParam{std::nullopt, false}; }
  template <class T>
  static PgParam optional(const std::optional<T>& v) {
    if (!v) return null();
    if constexpr (std::is_same_v<T, std::string>)
      return text(*v);
    else
      return integer(static_cast<std::int64_t>(*v));
  }
};

// A query's rows in text format; owns the PGresult.
class PgResult {
 public:
  explicit PgResult(PGresult* result) : result_(result) {}
  PgResult(PgResult&& other) noexcept : result_(other.result_) { other.result_ = nullptr; }
  PgResult& operator=(PgResult&&) = delete;
  PgResult(const PgResult&) = delete;
  ~PgResult() { PQclear(result_); }

  int rows() const { return PQntuples(result_); }
  bool null(int row, int col) const { return PQgetisnull(result_, row, col) != 0; }
  std::string text(int row, int col) const;
  // A BIGINT/INTEGER column (the schema makes it one; text format is plain decimal).
  std::int64_t integer(int row, int col) const;
  Bytes bytes(int row, int col) const;  // a BYTEA column
  // Number of rows the statement changed (INSERT/UPDATE/DELETE).
  std::int64_t changed() const;
  const PGresult* raw() const { return result_; }

 private:
  PGresult* result_;
};

class PgConnection {
 public:
  // Connects and checks the settings (no inline password; a readable, non-empty password file).
  static Outcome<std::unique_ptr<PgConnection>> open(const PgSettings& settings);
  ~PgConnection();
  PgConnection(const PgConnection&) = delete;
  PgConnection& operator=(const PgConnection&) = delete;

  // Runs one parameterised statement. `what` names it in the error. Errors are Code::unavailable,
  // with PostgreSQL's message and SQLSTATE.
  Outcome<PgResult> query(const std::string& what, const char* sql, const std::vector<PgParam>& params = {});
  // Runs several statements without parameters (migrations, BEGIN/COMMIT).
  Outcome<void> script(const std::string& what, const char* sql);

  // Reconnects a connection the server or network dropped; an error while the database is away.
  Outcome<void> ensure_connected();
  bool broken() const { return PQstatus(conn_) != CONNECTION_OK; }
  // The server process serving this connection (pg_terminate_backend in tests, lease holders).
  int backend_pid() const { return PQbackendPID(conn_); }
  int socket() const { return PQsocket(conn_); }
  PGconn* raw() { return conn_; }
  // The conninfo as given (it never holds a password).
  const std::string& dsn() const { return dsn_; }

 private:
  PgConnection(PGconn* conn, std::string dsn) : conn_(conn), dsn_(std::move(dsn)) {}
  Error error(const std::string& what, const PGresult* result) const;
  PGconn* conn_;
  std::string dsn_;
};

// Reads a password file (no group/other access, not empty); one trailing newline is dropped.
Outcome<SecureString> read_password_file(const std::string& path);

}  // namespace custody::core
