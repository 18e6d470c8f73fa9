#include "daemon/xks/secret_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace custody::xks {

namespace {
constexpr std::size_t kMinSecret = 43, kMaxSecret = 64;
}

Expected<SecureBytes, std::string> read_secret(const std::string& name, bool systemd_credential) {
  std::string path = name;
  if (systemd_credential) {
    const char* dir = std::getenv("CREDENTIALS_DIRECTORY");
    if (!dir || !*dir) return unexpected("the systemd credential " + name + " needs $CREDENTIALS_DIRECTORY (LoadCredential=)");
    if (name.find('/') != std::string::npos) return unexpected("a systemd credential name has no '/': " + name);
    path = std::string(dir) + "/" + name;
  }
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0)
    return unexpected("cannot open the XKS secret " + path + ": " + std::strerror(errno) +
                      "; write the secret access key there (one line) readable by custodyd's user alone");
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return unexpected("the XKS secret " + path + " is not a regular file");
  }
  if (!systemd_credential && (st.st_mode & 0077) != 0) {
    ::close(fd);
    return unexpected("the XKS secret " + path + " is readable by others; chmod 0400 or 0600");
  }
  SecureBytes data(kMaxSecret + 2);
  std::size_t got = 0;
  while (got < data.size()) {
    const ssize_t n = ::read(fd, data.data() + got, data.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int e = errno;
      ::close(fd);
      return unexpected("cannot read the XKS secret " + path + ": " + std::strerror(e));
    }
    if (n == 0) break;
    got += static_cast<std::size_t>(n);
  }
  ::close(fd);  // read-only: nothing to lose on close
  data.resize(got);
  while (!data.empty() && (data.back() == '\n' || data.back() == '\r')) data.pop_back();
  if (data.size() < kMinSecret || data.size() > kMaxSecret)
    return unexpected("the XKS secret " + path + " must be one line of 43 to 64 characters");
  for (auto c : data)
    if (c < 0x21 || c > 0x7e) return unexpected("the XKS secret " + path + " has a character outside printable ASCII");
  return data;
}

}  // namespace custody::xks
