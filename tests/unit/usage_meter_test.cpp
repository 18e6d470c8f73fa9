// UsageMeter fails closed: a durable count that cannot be read refuses the encryption (and is read
// again next time) instead of counting from 0, and a reservation never lowers the stored count.
#include <gtest/gtest.h>

#include "daemon/core/keys/usage_meter.h"
#include "tests/support/softhsm_token.h"
#include "tests/support/sqlite_fault_vfs.h"

using namespace custody;
using namespace custody::core;
using namespace custody::test;

namespace {

Key one_version_key(const std::string& name) {
  Key k;
  k.name = name;
  k.current_version = 1;
  KeyVersion v;
  v.version = 1;
  v.object = ObjectRef{Bytes(16, 1), object_label(name, 1)};
  k.versions.push_back(v);
  return k;
}

}  // namespace

TEST(UsageMeter, AReadErrorAtFirstUseRefusesTheEncryptionInsteadOfCountingFromZero) {
  TempDir dir;
  const std::string path = dir.path() + "/state.db";
  {
    auto store = StateStore::open(path).value();
    ASSERT_TRUE(store->insert_key(one_version_key("k"), 0));
    ASSERT_TRUE(store->set_encryptions("k", 1, 1000));
  }
  SqliteFaultVfs vfs;
  auto store = StateStore::open(path).value();
  UsageMeter meter(*store);
  vfs.fail(SqliteFaultVfs::Op::read, 1, "state.db", /*sticky=*/true);
  auto counted = meter.count("k", 1, 1u << 20);
  ASSERT_GT(vfs.failed(), 0);
  ASSERT_FALSE(counted) << "counted " << *counted << " from a count it could not read";
  EXPECT_EQ(counted.error().code, Code::unavailable);
  EXPECT_NE(counted.error().message.find("usage count"), std::string::npos) << counted.error().message;
  EXPECT_FALSE(meter.used("k", 1));
  vfs.heal();
  // Nothing was cached from the failure: the next use reads the durable count.
  auto next = meter.count("k", 1, 1u << 20);
  ASSERT_TRUE(next) << next.error().message;
  EXPECT_EQ(*next, 1001u);
  EXPECT_GE(store->encryptions("k", 1).value(), 1001u);
}

TEST(UsageMeter, AVersionWithoutARowIsRefusedNotCountedFromZero) {
  TempDir dir;
  auto store = StateStore::open(dir.path() + "/state.db").value();
  ASSERT_TRUE(store->insert_key(one_version_key("k"), 0));
  UsageMeter meter(*store);
  auto counted = meter.count("k", 2, 100);
  ASSERT_FALSE(counted);
  EXPECT_EQ(counted.error().code, Code::internal);
}

TEST(UsageMeter, AReservationNeverLowersTheDurableCount) {
  TempDir dir;
  auto store = StateStore::open(dir.path() + "/state.db").value();
  ASSERT_TRUE(store->insert_key(one_version_key("k"), 0));
  UsageMeter meter(*store);
  // limit 16000: blocks of 1001 (the encryption at hand and 1000 more).
  ASSERT_EQ(meter.count("k", 1, 16000).value(), 1u);
  // Meanwhile the durable count went higher (an earlier run's reservation restored, another
  // daemon's blocks): this meter uses up its own block without lowering it...
  ASSERT_TRUE(store->set_encryptions("k", 1, 5000));
  for (std::uint64_t n = 2; n <= 1001; ++n) ASSERT_EQ(meter.count("k", 1, 16000).value(), n);
  EXPECT_EQ(store->encryptions("k", 1).value(), 5000u);
  // ...and its next block starts from the durable count, never from its own.
  ASSERT_EQ(meter.count("k", 1, 16000).value(), 5001u);
  EXPECT_EQ(store->encryptions("k", 1).value(), 6001u);
  UsageMeter after_restart(*store);
  EXPECT_EQ(after_restart.used("k", 1).value(), 6001u);
}

// The usage limit is a bound, not a hint: the encryption past it is refused (the key is rotated
// meanwhile), also when the numbers were taken by someone else (another daemon of a fleet).
TEST(UsageMeter, AnEncryptionPastTheUsageLimitIsRefusedAndSignalledOnce) {
  TempDir dir;
  auto store = StateStore::open(dir.path() + "/state.db").value();
  ASSERT_TRUE(store->insert_key(one_version_key("k"), 0));
  UsageMeter meter(*store);
  int signals = 0;
  meter.on_limit([&](const std::string& key) { signals += key == "k"; });
  for (std::uint64_t n = 1; n <= 40; ++n) ASSERT_EQ(meter.count("k", 1, 40).value(), n);
  EXPECT_EQ(signals, 1);
  auto refused = meter.count("k", 1, 40);
  ASSERT_FALSE(refused) << "encryption " << *refused << " past the limit of 40";
  EXPECT_EQ(refused.error().code, Code::failed_precondition);
  EXPECT_NE(refused.error().message.find("usage limit"), std::string::npos) << refused.error().message;
  EXPECT_EQ(store->encryptions("k", 1).value(), 40u);
  EXPECT_EQ(signals, 1);
  // Another meter over the same count (a second daemon) is refused at once, and told.
  UsageMeter other(*store);
  int other_signals = 0;
  other.on_limit([&](const std::string&) { ++other_signals; });
  EXPECT_FALSE(other.count("k", 1, 40));
  EXPECT_EQ(other_signals, 1);
}

TEST(UsageMeter, AFailedReservationRefusesTheEncryption) {
  TempDir dir;
  const std::string path = dir.path() + "/state.db";
  {
    auto store = StateStore::open(path).value();
    ASSERT_TRUE(store->insert_key(one_version_key("k"), 0));
  }
  SqliteFaultVfs vfs;
  auto store = StateStore::open(path).value();
  UsageMeter meter(*store);
  ASSERT_EQ(meter.count("k", 1, 16).value(), 1u);
  vfs.fail(SqliteFaultVfs::Op::write, 1, "state.db", /*sticky=*/true);
  // Reserved up to 2 by the first count (blocks of 1 for limit 16): the third needs a write.
  ASSERT_EQ(meter.count("k", 1, 16).value(), 2u);
  auto counted = meter.count("k", 1, 16);
  ASSERT_GT(vfs.failed(), 0);
  ASSERT_FALSE(counted) << "encryption " << *counted << " ran without its durable reservation";
  EXPECT_EQ(counted.error().code, Code::unavailable);
  vfs.heal();
  EXPECT_EQ(meter.count("k", 1, 16).value(), 3u) << "the refused encryption is not counted";
}
