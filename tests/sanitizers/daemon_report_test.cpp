// In the sanitizer builds the end-to-end tests run a sanitized custodyd: a report in its log must
// fail the test that ran it, also when the daemon goes on after it (TSan) or the test never
// looks at the log.
#include <gtest/gtest-spi.h>
#include <gtest/gtest.h>

#include <fstream>

#include "tests/support/daemon_process.h"

namespace {

void append_to_log(const custody::test::Daemon& daemon, const char* line) {
  std::ofstream(daemon.dir() + "/custodyd.log", std::ios::app) << line;
}

}  // namespace

TEST(SanitizerReport, InTheDaemonLogFailsTheTestWhenTheDaemonIsKilled) {
  EXPECT_NONFATAL_FAILURE(
      {
        custody::test::Daemon daemon;
        append_to_log(daemon, "==42==ERROR: AddressSanitizer: heap-use-after-free on address 0x602000000010\n");
      },
      "custodyd reported a sanitizer finding");
}

TEST(SanitizerReport, InTheDaemonLogFailsTheTestAtTerminateOnce) {
  EXPECT_NONFATAL_FAILURE(
      {
        custody::test::Daemon daemon;
        append_to_log(daemon, "WARNING: ThreadSanitizer: data race (pid=42)\n");
        EXPECT_EQ(daemon.terminate(), 0);
      },
      "custodyd reported a sanitizer finding");
}

TEST(SanitizerReport, ACleanLogFailsNothing) {
  custody::test::Daemon daemon;
  EXPECT_EQ(daemon.terminate(), 0);
}
