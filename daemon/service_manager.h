#pragma once
// The sd_notify protocol, without libsystemd: one datagram per state change to the socket named
// by NOTIFY_SOCKET (Type=notify units). READY=1 once the sockets listen, STATUS= lines for
// `systemctl status`, STOPPING=1 when draining, and WATCHDOG=1 from a timer on the I/O loop, so
// that a loop that stops turning (a deadlock, a handler stuck in a token call) stops the pings
// and systemd restarts the daemon (WatchdogSec=). Without NOTIFY_SOCKET every call does nothing.
#include <sys/types.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <optional>
#include <string>
#include <string_view>

#include "common/expected.h"

namespace custody {

class ServiceManager {
 public:
  // Reads NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID from the environment and unsets them: a
  // process started later must not speak for this one.
  ServiceManager();
  ServiceManager(const ServiceManager&) = delete;
  ServiceManager& operator=(const ServiceManager&) = delete;
  ~ServiceManager();

  bool enabled() const { return fd_ >= 0; }
  // The interval systemd asked for (WatchdogSec=), when it asked this process.
  std::optional<std::chrono::microseconds> watchdog_timeout() const { return watchdog_timeout_; }

  // Sends newline-separated assignments ("READY=1\nSTATUS=serving") in one datagram.
  Expected<void, std::string> notify(std::string_view assignments);

  // Pings at half the watchdog timeout from a timer on io, until stop_watchdog().
  void start_watchdog(boost::asio::io_context& io);
  void stop_watchdog();

 private:
  void schedule_ping();

  int fd_ = -1;
  std::string address_;  // a path, or "@name" for the abstract namespace
  std::optional<std::chrono::microseconds> watchdog_timeout_;
  std::optional<boost::asio::steady_timer> watchdog_timer_;
  bool watchdog_stopped_ = false;
  bool warned_ = false;
};

}  // namespace custody
