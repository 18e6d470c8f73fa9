#include "daemon/core/state/postgres/pg_connection.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>

namespace custody::core {
namespace {

Error connect_error(const std::string& dsn, PGconn* conn) {
  std::string message = conn ? PQerrorMessage(conn) : "out of memory";
  while (!message.empty() && (message.back() == '\n' || message.back() == ' ')) message.pop_back();
  return Error{Code::unavailable, "cannot connect to the state database (" + dsn + "): " + message};
}

// A password inside the conninfo would be copied into configs, logs and process listings.
Outcome<void> refuse_inline_password(const std::string& dsn) {
  char* parse_error = nullptr;
  PQconninfoOption* options = PQconninfoParse(dsn.c_str(), &parse_error);
  if (!options) {
    std::string message = parse_error ? parse_error : "out of memory";
    PQfreemem(parse_error);
    while (!message.empty() && message.back() == '\n') message.pop_back();
    return fail(Code::invalid_argument, "state database dsn is not a libpq conninfo: " + message);
  }
  bool inline_password = false;
  for (PQconninfoOption* o = options; o->keyword; ++o)
    if (std::strcmp(o->keyword, "password") == 0 && o->val && *o->val) inline_password = true;
  PQconninfoFree(options);
  if (inline_password)
    return fail(Code::invalid_argument, "state database dsn holds a password: give it in a password file instead");
  return {};
}

}  // namespace

std::string PgResult::text(int row, int col) const {
  const char* value = PQgetvalue(result_, row, col);
  return std::string(value, static_cast<std::size_t>(PQgetlength(result_, row, col)));
}

std::int64_t PgResult::integer(int row, int col) const {
  const char* value = PQgetvalue(result_, row, col);
  std::int64_t out = 0;
  std::from_chars(value, value + PQgetlength(result_, row, col), out);
  return out;
}

Bytes PgResult::bytes(int row, int col) const {
  std::size_t size = 0;
  unsigned char* raw = PQunescapeBytea(reinterpret_cast<const unsigned char*>(PQgetvalue(result_, row, col)), &size);
  if (!raw) return {};
  Bytes out(raw, raw + size);
  PQfreemem(raw);
  return out;
}

std::int64_t PgResult::changed() const {
  const char* tuples = PQcmdTuples(result_);
  std::int64_t out = 0;
  std::from_chars(tuples, tuples + std::strlen(tuples), out);
  return out;
}

Outcome<SecureString> read_password_file(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return fail(Code::unavailable,
                "cannot open the state database password file " + path + ": " + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return fail(Code::unavailable, "state database password file " + path + " is not a regular file");
  }
  if ((st.st_mode & 077) != 0) {
    ::close(fd);
    return fail(Code::invalid_argument,
                "state database password file " + path + " is open to group or others (make it 0400 or 0600)");
  }
  SecureString password;
  char buffer[256];
  for (;;) {
    const ssize_t n = ::read(fd, buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int err = errno;
      OPENSSL_cleanse(buffer, sizeof buffer);
      ::close(fd);
      return fail(Code::unavailable,
                  "cannot read the state database password file " + path + ": " + std::strerror(err));
    }
    if (n == 0) break;
    password.append(buffer, static_cast<std::size_t>(n));
  }
  OPENSSL_cleanse(buffer, sizeof buffer);
  ::close(fd);
  if (!password.empty() && password.back() == '\n') password.pop_back();
  if (!password.empty() && password.back() == '\r') password.pop_back();
  if (password.empty()) return fail(Code::invalid_argument, "state database password file " + path + " is empty");
  return password;
}

Outcome<std::unique_ptr<PgConnection>> PgConnection::open(const PgSettings& settings) {
  if (auto r = refuse_inline_password(settings.dsn); !r) return unexpected(r.error());
  SecureString password;
  if (!settings.password_file.empty()) {
    auto read = read_password_file(settings.password_file);
    if (!read) return unexpected(read.error());
    password = std::move(*read);
  }
  // Later keywords override earlier ones: the defaults come first so the dsn can change them, the
  // password last. expand_dbname=1 lets the dsn be a whole conninfo.
  std::vector<const char*> keywords = {"connect_timeout", "application_name", "dbname"};
  std::vector<const char*> values = {"5", "custodyd", settings.dsn.c_str()};
  if (!password.empty()) {
    keywords.push_back("password");
    values.push_back(password.c_str());
  }
  keywords.push_back(nullptr);
  values.push_back(nullptr);
  PGconn* conn = PQconnectdbParams(keywords.data(), values.data(), 1);
  if (!conn || PQstatus(conn) != CONNECTION_OK) {
    Error e = connect_error(settings.dsn, conn);
    PQfinish(conn);
    return unexpected(std::move(e));
  }
  return std::unique_ptr<PgConnection>(new PgConnection(conn, settings.dsn));
}

PgConnection::~PgConnection() { PQfinish(conn_); }

Error PgConnection::error(const std::string& what, const PGresult* result) const {
  std::string message = result ? PQresultErrorMessage(result) : "";
  if (message.empty()) message = PQerrorMessage(conn_);
  while (!message.empty() && (message.back() == '\n' || message.back() == ' ')) message.pop_back();
  if (result) {
    if (const char* state = PQresultErrorField(result, PG_DIAG_SQLSTATE))
      message += std::string(" (SQLSTATE ") + state + ")";
  }
  if (message.empty()) message = "no answer from the server";
  return Error{Code::unavailable, "state database error " + what + ": " + message};
}

Outcome<void> PgConnection::ensure_connected() {
  if (PQstatus(conn_) == CONNECTION_OK) return {};
  PQreset(conn_);
  if (PQstatus(conn_) != CONNECTION_OK) return unexpected(connect_error(dsn_, conn_));
  return {};
}

Outcome<PgResult> PgConnection::query(const std::string& what, const char* sql, const std::vector<PgParam>& params) {
  std::vector<const char*> values;
  std::vector<int> lengths, formats;
  values.reserve(params.size());
  for (const auto& p : params) {
    values.push_back(p.value ? p.value->data() : nullptr);
    lengths.push_back(p.value ? static_cast<int>(p.value->size()) : 0);
    formats.push_back(p.binary ? 1 : 0);
  }
  PgResult result(PQexecParams(conn_, sql, static_cast<int>(params.size()), nullptr, values.data(), lengths.data(),
                               formats.data(), /*resultFormat=*/0));
  const ExecStatusType status = result.raw() ? PQresultStatus(result.raw()) : PGRES_FATAL_ERROR;
  if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) return unexpected(error(what, result.raw()));
  return result;
}

Outcome<void> PgConnection::script(const std::string& what, const char* sql) {
  PgResult result(PQexec(conn_, sql));
  const ExecStatusType status = result.raw() ? PQresultStatus(result.raw()) : PGRES_FATAL_ERROR;
  if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) return unexpected(error(what, result.raw()));
  return {};
}

}  // namespace custody::core
