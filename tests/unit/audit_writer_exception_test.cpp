// The audit writer thread survives an exception from a group: the group's submitters are told
// "not written", the log fails closed, and the next group is written on an unbroken chain.
#include <gtest/gtest.h>

#include <atomic>
#include <sstream>
#include <stdexcept>

#include "daemon/core/audit/audit_log.h"
#include "daemon/core/audit/audit_verify.h"
#include "tests/support/softhsm_token.h"

using namespace custody;
using namespace custody::core;

namespace {

AuditEvent event(const std::string& type) {
  AuditEvent e;
  e.type = type;
  e.request_id = "req-" + type;
  e.client = Peer{1000, 1000, 42};
  return e;
}

}  // namespace

TEST(AuditWriter, AGroupThatThrowsFailsItsSubmittersAndTheWriterGoesOn) {
  test::TempDir dir;
  const std::string path = dir.path() + "/audit.jsonl";
  SystemClock clock;
  auto log = AuditLog::open(path, AuditDurability::group, clock);
  ASSERT_TRUE(log) << log.error();
  std::atomic<bool> signer_throws{true};
  (*log)->set_checkpoints(
      [&](std::string_view) -> Expected<Bytes, std::string> {
        if (signer_throws) throw std::runtime_error("the signer ran out of memory");
        return unexpected(std::string("no key in this test"));
      },
      1000, Peer{0, 0, 1});
  ASSERT_TRUE((*log)->write({event("wrap")}));

  // The checkpoint's signer throws on the writer thread: before, std::terminate.
  EXPECT_FALSE((*log)->checkpoint());
  EXPECT_FALSE((*log)->accepting()) << "a log whose writer failed must refuse requests (fail closed)";

  // The writer is still there: the next group is written, on the chain the first one started.
  signer_throws = false;
  ASSERT_TRUE((*log)->write({event("unwrap")}));
  EXPECT_TRUE((*log)->accepting());
  EXPECT_EQ((*log)->sequence(), 2u);
  std::istringstream in(test::read_file(path));
  auto v = verify_audit_log(in);
  EXPECT_TRUE(v.ok) << v.problem;
  EXPECT_EQ(v.records, 2u);
}
