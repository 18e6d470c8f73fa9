#include "pkcs11/pin_source.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>

namespace custody::p11 {
namespace {

constexpr std::size_t kMaxPinFileBytes = 4096;

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
  std::string failure;
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      failure = "cannot read PIN file " + path + ": " + std::strerror(errno);
      break;
    }
    if (n == 0) break;
    // Refused, not cut: a PIN taken from the first kMaxPinFileBytes of a file is not the PIN
    // whoever wrote the file meant.
    if (pin.size() + static_cast<std::size_t>(n) > kMaxPinFileBytes) {
      failure = "PIN file " + path + " is longer than " + std::to_string(kMaxPinFileBytes) + " bytes; is it the right file?";
      break;
    }
    pin.append(buf, static_cast<std::size_t>(n));
  }
  OPENSSL_cleanse(buf, sizeof buf);
  ::close(fd);
  if (!failure.empty()) return unexpected(std::move(failure));
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
      char* v = std::getenv(source.value.c_str());
      if (!v || !*v) return unexpected("environment variable " + source.value + " with the token PIN is not set");
      SecureString pin(v);
      // Read once at start (the session pool keeps it for re-login): wipe the value in place,
      // since /proc/PID/environ shows the original block, and remove the variable so that
      // nothing later (a child, a crash report) finds it.
      OPENSSL_cleanse(v, std::strlen(v));
      if (::unsetenv(source.value.c_str()) != 0)
        return unexpected("cannot remove environment variable " + source.value + ": " + std::strerror(errno));
      return pin;
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
