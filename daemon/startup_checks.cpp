#include "daemon/startup_checks.h"
#include "daemon/core/state/postgres/pg_connection.h"
#include "daemon/transport/tcp_listener.h"
#include "daemon/xks/secret_file.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>

namespace custody::config {
namespace {

namespace fs = std::filesystem;

// A public key PEM is a few KiB at most: anything far larger is the wrong file.
constexpr std::size_t kMaxKeyFileBytes = 64 * 1024;

std::string errno_text() { return std::strerror(errno); }

Expected<std::string, std::string> read_key_file(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return unexpected("cannot open " + path + ": " + errno_text());
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return unexpected(path + " is not a regular file");
  }
  std::string text;
  char buf[4096];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const std::string why = errno_text();
      ::close(fd);
      return unexpected("cannot read " + path + ": " + why);
    }
    if (n == 0) break;
    text.append(buf, static_cast<std::size_t>(n));
    if (text.size() > kMaxKeyFileBytes) {
      ::close(fd);
      return unexpected(path + " is larger than " + std::to_string(kMaxKeyFileBytes) + " bytes; is it the right file?");
    }
  }
  ::close(fd);
  return text;
}

fs::path directory_of(const std::string& file) {
  fs::path dir = fs::path(file).parent_path();
  return dir.empty() ? fs::path(".") : dir;
}

// Files can be made in dir by this user.
Expected<void, std::string> writable_directory(const fs::path& dir, const std::string& key) {
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0) return unexpected(key + ": cannot reach directory " + dir.string() + ": " + errno_text());
  if (!S_ISDIR(st.st_mode)) return unexpected(key + ": " + dir.string() + " is not a directory");
  if (::access(dir.c_str(), W_OK | X_OK) != 0)
    return unexpected(key + ": cannot create files in " + dir.string() + " (" + errno_text() +
                      "); give the directory to the user custodyd runs as");
  return {};
}

}  // namespace

Expected<core::OperatorSet, std::string> load_operators(const DualControl& dual_control) {
  std::vector<core::OperatorKey> keys;
  for (const auto& op : dual_control.operators) {
    auto pem = read_key_file(op.public_key_path);
    if (!pem)
      return unexpected("dual_control.operators: the public key of operator '" + op.name + "': " + pem.error());
    keys.push_back({op.name, std::move(*pem), op.public_key_path});
  }
  auto set = core::OperatorSet::from_keys(keys);
  if (!set) return unexpected("dual_control.operators: " + set.error());
  return set;
}

Expected<void, std::string> check_pin_file(const p11::PinSource& pin) {
  if (pin.kind != p11::PinSource::Kind::file) return {};
  const std::string& path = pin.value;
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) return unexpected("token.pin: PIN file " + path + ": " + errno_text());
  if (!S_ISREG(st.st_mode)) return unexpected("token.pin: PIN file " + path + " is not a regular file");
  if (st.st_uid != ::geteuid())
    return unexpected("token.pin: PIN file " + path + " is owned by uid " + std::to_string(st.st_uid) +
                      ", not by the user custodyd runs as (uid " + std::to_string(::geteuid()) + "); chown it");
  if ((st.st_mode & 07777 & ~0600) != 0)
    return unexpected("token.pin: PIN file " + path + " has mode " + [&] {
      char mode[8];
      std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
      return std::string(mode);
    }() + "; chmod 0400 or 0600 it");
  if ((st.st_mode & 0400) == 0) return unexpected("token.pin: PIN file " + path + " is not readable by its owner; chmod 0400 it");
  return {};
}

Expected<void, std::string> prepare_directory_of(const std::string& file, const std::string& key, bool create) {
  const fs::path dir = directory_of(file);
  struct stat st {};
  if (::stat(dir.c_str(), &st) == 0 || errno != ENOENT) {
    if (auto ok = writable_directory(dir, key); !ok) return ok;
    // An existing file is opened for reading and writing.
    if (::access(file.c_str(), F_OK) == 0 && ::access(file.c_str(), R_OK | W_OK) != 0)
      return unexpected(key + ": cannot open " + file + " for reading and writing (" + errno_text() +
                        "); give it to the user custodyd runs as");
    return {};
  }
  // Missing: the nearest directory that exists must let us make the rest.
  fs::path ancestor = dir;
  while (ancestor.has_parent_path() && ancestor.parent_path() != ancestor) {
    ancestor = ancestor.parent_path();
    if (::stat(ancestor.c_str(), &st) == 0 || errno != ENOENT) break;
  }
  if (auto ok = writable_directory(ancestor, key); !ok)
    return unexpected(ok.error() + " (to make the missing directory " + dir.string() + ")");
  if (!create) return {};
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return unexpected(key + ": cannot create directory " + dir.string() + ": " + ec.message());
  // Only the daemon reads its state and its audit trail.
  if (::chmod(dir.c_str(), 0700) != 0)
    return unexpected(key + ": cannot make " + dir.string() + " mode 0700: " + errno_text());
  return {};
}

Expected<void, std::string> check_socket_path(const Socket& socket, const std::string& key) {
  if (socket.path.size() >= sizeof(sockaddr_un{}.sun_path))
    return unexpected(key + ": " + socket.path + " is too long for a Unix socket path (at most " +
                      std::to_string(sizeof(sockaddr_un{}.sun_path) - 1) + " bytes)");
  struct stat st {};
  if (::lstat(socket.path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode))
      return unexpected(key + ": " + socket.path + " exists and is not a socket; remove it or choose another path");
    // systemd's socket (socket activation: its directory need not be ours) or a stale one.
    return {};
  }
  return prepare_directory_of(socket.path, key, false);
}

Expected<std::vector<xks::SigV4Credential>, std::string> read_xks_credentials(const Xks& xks) {
  std::vector<xks::SigV4Credential> out;
  for (const auto& c : xks.credentials) {
    auto secret = xks::read_secret(c.secret_file, c.systemd_credential);
    if (!secret) return unexpected("xks.credentials " + c.access_key_id + ": " + secret.error());
    out.push_back({c.access_key_id, std::move(*secret)});
  }
  return out;
}

std::vector<std::string> check_xks(const Xks& xks) {
  std::vector<std::string> problems;
  if (xks.tls) {
    const auto& t = *xks.tls;
    auto context = transport::build_tls_context({t.certificate, t.private_key, t.client_ca, t.client_subject});
    if (!context) {
      const auto& p = context.error();
      switch (p.file) {
        case transport::TlsFile::certificate:
          problems.push_back("xks.tls.certificate: " + p.message + "; give a readable PEM certificate chain, leaf first");
          break;
        case transport::TlsFile::private_key:
          problems.push_back("xks.tls.private_key: " + p.message +
                             "; give the PEM private key of the certificate in xks.tls.certificate");
          break;
        case transport::TlsFile::client_ca:
          problems.push_back("xks.tls.client_ca: " + p.message + "; give the PEM certificate of the CA that signs the clients'");
          break;
        case transport::TlsFile::none:
          problems.push_back("xks.tls: " + p.message);
          break;
      }
    }
  }
  for (std::size_t i = 0; i < xks.credentials.size(); ++i) {
    const auto& c = xks.credentials[i];
    // A systemd credential exists only in the service's environment (LoadCredential=), as the PIN's.
    if (c.systemd_credential && !std::getenv("CREDENTIALS_DIRECTORY")) continue;
    if (auto secret = xks::read_secret(c.secret_file, c.systemd_credential); !secret)
      problems.push_back("xks.credentials[" + std::to_string(i) + "] (" + c.access_key_id + "): " + secret.error());
  }
  return problems;
}

std::vector<std::string> check_startup(const Config& config) {
  std::vector<std::string> problems;
  auto note = [&problems](const auto& outcome) {
    if (!outcome) problems.push_back(outcome.error());
  };
  note(check_pin_file(config.token.pin));
  if (config.state_backend == "sqlite") note(prepare_directory_of(config.state_path, "state.path", false));
  // A PostgreSQL password file must be private and non-empty (a credential is checked at start).
  if (config.state_backend == "postgresql" && !config.state_password_file.empty() && !config.state_password_credential)
    if (auto password = core::read_password_file(config.state_password_file); !password)
      problems.push_back("state.password_file: " + password.error().message);
  note(prepare_directory_of(config.audit.path, "audit.path", false));
  note(check_socket_path(config.service_socket, "sockets.service.path"));
  note(check_socket_path(config.admin_socket, "sockets.admin.path"));
  if (config.kms) note(check_socket_path(config.kms->socket, "sockets.kms.path"));
  note(load_operators(config.dual_control));
  if (config.xks)
    for (auto& problem : check_xks(*config.xks)) problems.push_back(std::move(problem));
  return problems;
}

}  // namespace custody::config
