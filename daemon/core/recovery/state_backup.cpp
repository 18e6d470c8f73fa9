// State backup: the token holds the keys, the state database says what they are (names, versions,
// policies, states). A copy is taken with SQLite's online backup API into a private file next to
// the database (same file system, same protection), read back and removed.
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "common/hex.h"
#include "daemon/core/recovery/recovery.h"

namespace custody::core {

Outcome<Bytes> Recovery::state_snapshot() {
  std::uint8_t nonce[8];
  if (auto r = vault_.random(nonce); !r) return unexpected(r.error());
  const std::string path = store_.path() + ".backup-" + hex_lower(nonce);
  if (auto r = store_.backup_to(path); !r) return unexpected(r.error());
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    ::unlink(path.c_str());
    return fail(Code::unavailable, "cannot read the state backup: " + std::string(std::strerror(errno)));
  }
  Bytes data;
  std::uint8_t buffer[65536];
  std::string error;
  for (;;) {
    const ssize_t n = ::read(fd, buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      error = std::strerror(errno);
      break;
    }
    if (n == 0) break;
    data.insert(data.end(), buffer, buffer + n);
  }
  ::close(fd);
  ::unlink(path.c_str());
  if (!error.empty()) return fail(Code::unavailable, "cannot read the state backup: " + error);
  return data;
}

}  // namespace custody::core
