#include "bench/machine.h"

#include <sys/utsname.h>
#include <unistd.h>

#include <fstream>

namespace custody::bench {

std::string describe_machine() {
  std::string cpu = "unknown CPU";
  std::ifstream cpuinfo("/proc/cpuinfo");
  for (std::string line; std::getline(cpuinfo, line);)
    if (line.rfind("model name", 0) == 0) {
      cpu = line.substr(line.find(':') + 2);
      break;
    }
  std::string kernel = "unknown kernel";
  if (utsname u{}; ::uname(&u) == 0) kernel = std::string(u.sysname) + " " + u.release;
  return cpu + ", " + std::to_string(::sysconf(_SC_NPROCESSORS_ONLN)) + " CPUs online, " + kernel + "; module " +
         CUSTODY_SOFTHSM_MODULE;
}

}  // namespace custody::bench
