#include "bench/fsync_floor.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <string>
#include <vector>

namespace custody::bench {

void run_fsync_floor(const std::string& directory, unsigned samples, Report& report) {
  const std::string path = directory + "/custody-bench-fsync.jsonl";
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (fd < 0) return report.add_missing("fsync", "cannot open " + path + ": " + std::strerror(errno));
  std::string line(299, 'x');
  line += '\n';
  std::string failure;
  TimedSamples timed = time_samples(samples, [&] {
    if (::write(fd, line.data(), line.size()) != static_cast<ssize_t>(line.size()))
      failure = std::string("write: ") + std::strerror(errno);
    else if (::fdatasync(fd) != 0)
      failure = std::string("fdatasync: ") + std::strerror(errno);
    return failure.empty();
  });
  ::close(fd);
  ::unlink(path.c_str());
  if (!timed.completed) return report.add_missing("fsync", failure);
  Row row{"fsync", kFsyncRow};
  row.latency = summarize(timed.latencies_us);
  row.ops_per_second = static_cast<double>(samples) / timed.elapsed_seconds;
  row.note = std::to_string(samples) + " samples in the audit log's directory";
  print_progress(row);
  report.add(std::move(row));
}

}  // namespace custody::bench
