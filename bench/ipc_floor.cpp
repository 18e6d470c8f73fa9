#include "bench/ipc_floor.h"

#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <string>
#include <vector>

namespace custody::bench {

void run_ipc_floor(unsigned samples, Report& report) {
  int pair[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0)
    return report.add_missing("ipc", std::string("socketpair: ") + std::strerror(errno));
  const pid_t echo = ::fork();
  if (echo < 0) {
    ::close(pair[0]);
    ::close(pair[1]);
    return report.add_missing("ipc", std::string("fork: ") + std::strerror(errno));
  }
  if (echo == 0) {  // the echoing peer: answers each byte until the other end closes
    ::close(pair[0]);
    char byte;
    while (::read(pair[1], &byte, 1) == 1 && ::write(pair[1], &byte, 1) == 1) {
    }
    ::_exit(0);
  }
  ::close(pair[1]);
  TimedSamples timed = time_samples(samples, [&] {
    char byte = 'x';
    return ::write(pair[0], &byte, 1) == 1 && ::read(pair[0], &byte, 1) == 1;
  });
  ::close(pair[0]);
  ::waitpid(echo, nullptr, 0);
  if (!timed.completed) return report.add_missing("ipc", "the echoing process went away");
  Row row{"ipc", kIpcRow};
  row.latency = summarize(timed.latencies_us);
  row.ops_per_second = static_cast<double>(samples) / timed.elapsed_seconds;
  row.note = std::to_string(samples) + " one-byte round trips between two processes";
  print_progress(row);
  report.add(std::move(row));
}

}  // namespace custody::bench
