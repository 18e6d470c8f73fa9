#include "daemon/service_manager.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <spdlog/spdlog.h>

namespace custody {
namespace {

std::optional<unsigned long long> parse_number(const char* text) {
  if (!text || !*text) return std::nullopt;
  const std::string_view s(text);
  unsigned long long value = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
  if (ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
  return value;
}

}  // namespace

ServiceManager::ServiceManager() {
  const char* socket_env = std::getenv("NOTIFY_SOCKET");
  const std::string address = socket_env ? socket_env : "";
  const auto usec = parse_number(std::getenv("WATCHDOG_USEC"));
  const auto pid = parse_number(std::getenv("WATCHDOG_PID"));
  ::unsetenv("NOTIFY_SOCKET");
  ::unsetenv("WATCHDOG_USEC");
  ::unsetenv("WATCHDOG_PID");
  // sd_notify(3) accepts absolute paths and abstract names ("@..."); anything else is not for us.
  if (address.size() < 2 || (address[0] != '/' && address[0] != '@') || address.size() >= sizeof(sockaddr_un{}.sun_path)) {
    if (!address.empty()) spdlog::warn("NOTIFY_SOCKET '{}' is not a socket address; not notifying systemd", address);
    return;
  }
  fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd_ < 0) {
    spdlog::warn("cannot open a socket to notify systemd: {}", std::strerror(errno));
    return;
  }
  address_ = address;
  // WATCHDOG_PID, when set, names the process the watchdog is meant for (sd_watchdog_enabled(3)).
  if (usec && *usec > 0 && (!pid || *pid == static_cast<unsigned long long>(::getpid())))
    watchdog_timeout_ = std::chrono::microseconds(*usec);
}

ServiceManager::~ServiceManager() {
  if (fd_ >= 0) ::close(fd_);
}

Expected<void, std::string> ServiceManager::notify(std::string_view assignments) {
  if (fd_ < 0) return {};
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, address_.data(), address_.size());
  socklen_t len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + address_.size());
  if (address_[0] == '@') addr.sun_path[0] = '\0';  // abstract: no trailing NUL counted
  else ++len;
  const ssize_t sent = ::sendto(fd_, assignments.data(), assignments.size(), MSG_NOSIGNAL,
                                reinterpret_cast<const sockaddr*>(&addr), len);
  if (sent == static_cast<ssize_t>(assignments.size())) return {};
  const std::string why = sent < 0 ? std::strerror(errno) : "short write";
  // A service manager that went away must not flood the log once per watchdog ping.
  if (!warned_) {
    spdlog::warn("cannot notify systemd at {}: {}", address_, why);
    warned_ = true;
  }
  return unexpected("notify " + address_ + ": " + why);
}

void ServiceManager::start_watchdog(boost::asio::io_context& io) {
  if (!enabled() || !watchdog_timeout_ || watchdog_timer_) return;
  watchdog_timer_.emplace(io);
  (void)notify("WATCHDOG=1");
  schedule_ping();
}

void ServiceManager::schedule_ping() {
  watchdog_timer_->expires_after(*watchdog_timeout_ / 2);
  watchdog_timer_->async_wait([this](const boost::system::error_code& ec) {
    if (ec || watchdog_stopped_) return;
    (void)notify("WATCHDOG=1");
    schedule_ping();
  });
}

void ServiceManager::stop_watchdog() {
  watchdog_stopped_ = true;
  if (watchdog_timer_) watchdog_timer_->cancel();
}

}  // namespace custody
