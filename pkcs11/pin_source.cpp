#include "pkcs11/pin_source.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace custody::p11 {
namespace {

Expected<SecureString, std::string> read_secret_file(const std::string& path, bool check_mode) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return unexpected("cannot open PIN file " + path + ": " + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return unexpected("PIN file " + path + " is not a regular file");
  }
  if (check_mode && (st.st_mode & 077) != 0) {
    ::close(fd);
    return unexpected("PIN file " + path + " is readable by group or others; chmod 0400 or 0600 it");
  }
  SecureString pin;
  char buf[256];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    pin.append(buf, static_cast<std::size_t>(n));
    if (pin.size() > 4096) break;
  }
  OPENSSL_cleanse(buf, sizeof buf);
  ::close(fd);
  while (!pin.empty() && (pin.back() == '\n' || pin.back() == '\r')) pin.pop_back();
  if (pin.empty()) return unexpected("PIN file " + path + " is empty");
  return pin;
}

}  // namespace

std::string PinSource::describe() const {
  switch (kind) {
    case Kind::file: return "file " + value;
    case Kind::env: return "environment variable " + value;
    case Kind::credential: return "systemd credential " + value;
  }
  return value;
}

Expected<SecureString, std::string> read_pin(const PinSource& source) {
  switch (source.kind) {
    case PinSource::Kind::file:
      return read_secret_file(source.value, true);
    case PinSource::Kind::env: {
      const char* v = std::getenv(source.value.c_str());
      if (!v || !*v) return unexpected("environment variable " + source.value + " with the token PIN is not set");
      return SecureString(v);
    }
    case PinSource::Kind::credential: {
      const char* dir = std::getenv("CREDENTIALS_DIRECTORY");
      if (!dir) return unexpected("systemd credential " + source.value + " requested but CREDENTIALS_DIRECTORY is not set (use LoadCredential= in the unit)");
      // systemd already restricts the credentials directory to the service.
      return read_secret_file(std::string(dir) + "/" + source.value, false);
    }
  }
  return unexpected(std::string("unknown PIN source"));
}

}  // namespace custody::p11
