#pragma once
// A fleet member's own identity (docs/fleet.md). The store's instance_id is shared by every
// daemon of a fleet (admin challenges name it, so a request proposed on one daemon is approved on
// another); the audit chain and the attestation key are per host, so each host needs an id of its
// own: 16 random bytes in hex, kept in a file beside the audit log (the one per-host directory
// custodyd writes), made at the first start. Header-only: a handful of syscalls.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "common/expected.h"
#include "common/hex.h"
#include "common/random.h"

namespace custody::core {

inline std::string host_identity_path(const std::string& audit_path) { return audit_path + ".instance"; }

inline bool is_host_id(const std::string& id) {
  if (id.size() != 32) return false;
  for (char c : id)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  return true;
}

namespace detail {

inline std::string errno_text() { return std::strerror(errno); }

// Writes all of data to fd, through short writes and EINTR.
inline bool write_all(int fd, const std::string& data) {
  std::size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    done += static_cast<std::size_t>(n);
  }
  return true;
}

}  // namespace detail

// The host id kept at path, made there (0600, written to a temporary file, fsynced, renamed,
// directory fsynced) when there is none. An unreadable or malformed file is an error naming what
// to fix: a new id would give this host a new attestation key and orphan its old one.
inline Expected<std::string, std::string> load_or_create_host_id(const std::string& path) {
  const std::string fix = " (" + path + " holds this host's fleet instance id: restore it from a backup, or remove it"
                          " to give the host a new id and a new attestation key)";
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd >= 0) {
    char buf[80];
    std::string text;
    for (;;) {
      const ssize_t n = ::read(fd, buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        const std::string why = detail::errno_text();
        ::close(fd);
        return unexpected("cannot read the host identity file: " + why + fix);
      }
      if (n == 0 || text.size() > 64) break;
      text.append(buf, static_cast<std::size_t>(n));
    }
    ::close(fd);
    if (!text.empty() && text.back() == '\n') text.pop_back();
    if (!is_host_id(text)) return unexpected("the host identity file is not 32 lower-case hex digits" + fix);
    return text;
  }
  if (errno != ENOENT) return unexpected("cannot open the host identity file: " + detail::errno_text() + fix);

  std::uint8_t random[16];
  if (auto ok = fill_random(random); !ok) return unexpected("no randomness for the host identity: " + ok.error());
  const std::string id = hex_lower(random);
  const std::string temporary = path + ".tmp";
  fd = ::open(temporary.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return unexpected("cannot create " + temporary + ": " + detail::errno_text());
  const bool written = ::fchmod(fd, 0600) == 0 && detail::write_all(fd, id + "\n") && ::fsync(fd) == 0;
  const std::string why = detail::errno_text();
  if (::close(fd) != 0 || !written) {
    ::unlink(temporary.c_str());
    return unexpected("cannot write " + temporary + ": " + why);
  }
  if (::rename(temporary.c_str(), path.c_str()) != 0) {
    const std::string rename_why = detail::errno_text();
    ::unlink(temporary.c_str());
    return unexpected("cannot rename " + temporary + " to " + path + ": " + rename_why);
  }
  // The rename is durable only once the directory is.
  const auto slash = path.find_last_of('/');
  const std::string dir = slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
  const int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd < 0) return unexpected("cannot open " + dir + " to sync the host identity file: " + detail::errno_text());
  const bool synced = ::fsync(dir_fd) == 0;
  const std::string sync_why = detail::errno_text();
  ::close(dir_fd);
  if (!synced) return unexpected("cannot sync " + dir + " after writing the host identity file: " + sync_why);
  return id;
}

}  // namespace custody::core
