// StateStore on its own, and under SQLite faults (tests/support/sqlite_fault_vfs.h): a read that
// fails part-way through a table is an error naming the table, never a shorter list; a failed
// "applied" lookup is not "not applied"; the usage count only grows; destruction marks only the
// versions it was given.
#include <gtest/gtest.h>

#include <boost/json.hpp>

#include "daemon/core/state/state_store.h"
#include "tests/support/softhsm_token.h"
#include "tests/support/store_approval.h"
#include "tests/support/sqlite_fault_vfs.h"

using namespace custody;
using namespace custody::core;
using namespace custody::test;

namespace {

constexpr int kKeys = 60;
constexpr int kRequests = 40;
constexpr int kJobs = 40;
constexpr int kIntents = 40;

// Long enough that each table spans several b-tree pages.
std::string filler(int i) { return std::string(300, static_cast<char>('a' + i % 26)); }

Key make_key(const std::string& name, std::uint32_t versions) {
  Key k;
  k.name = name;
  k.current_version = versions;
  k.created_at = 1700000000;
  for (std::uint32_t v = 1; v <= versions; ++v) {
    KeyVersion kv;
    kv.version = v;
    kv.created_at = 1700000000;
    kv.reason = v == 1 ? "created" : "rotated";
    kv.object.id = Bytes(16, static_cast<std::uint8_t>(v));
    kv.object.label = object_label(name, v) + ":" + filler(static_cast<int>(v));
    k.versions.push_back(kv);
  }
  return k;
}

// A store with every table filled, at path.
void populate(const std::string& path) {
  auto store = StateStore::open(path).value();
  for (int i = 0; i < kKeys; ++i) ASSERT_TRUE(store->insert_key(make_key("key-" + std::to_string(i), 3), 0));
  for (int i = 0; i < kRequests; ++i) {
    StoredRequest r;
    r.id = "req-" + std::to_string(i);
    r.operation = "rotate-key";
    r.params = R"({"name":")" + filler(i) + R"("})";
    r.state = "pending";
    r.required = 2;
    r.challenge = filler(i);
    ASSERT_TRUE(store->insert_request(r));
    ASSERT_TRUE(store_approval(*store, r.id, StoredApproval{"alice", filler(i + 1), 1}, "pending"));
  }
  for (int i = 0; i < kJobs; ++i) {
    StoredJob j;
    j.id = "job-" + std::to_string(i);
    j.key_name = "imported";
    j.algorithm = "aes-256-gcm";
    j.method = "rsa-oaep-3072-sha256-aes-256";
    j.state = "active";
    j.wrapping = ObjectRef{Bytes(16, 7), "custody-import:" + j.id};
    j.public_key = filler(i);
    j.policy = "[]";
    ASSERT_TRUE(store->insert_job(j, {}));
  }
  for (int i = 0; i < kIntents; ++i)
    ASSERT_TRUE(store->begin_intent(Intent{0, "rotate-key", "key-" + std::to_string(i), 2, {Bytes(16, 1), filler(i)}, 1}));
}

// Fails the nth read of the database (or its WAL) during each load, for n = 1, 2, ... until a
// load runs without meeting the fault; every load must be an error naming table, or complete.
template <class Load>
void every_read_fault_is_an_error(const std::string& path, const char* table, std::size_t complete, Load load) {
  SqliteFaultVfs vfs;
  int errors = 0;
  for (int nth = 1;; ++nth) {
    SCOPED_TRACE("read " + std::to_string(nth));
    vfs.heal();
    auto store = StateStore::open(path);
    ASSERT_TRUE(store) << store.error();
    vfs.fail(SqliteFaultVfs::Op::read, nth, "state.db");
    auto loaded = load(**store);
    const bool hit = vfs.failed() > 0;
    vfs.heal();
    if (!loaded) {
      ++errors;
      EXPECT_EQ(loaded.error().code, Code::unavailable);
      EXPECT_NE(loaded.error().message.find(table), std::string::npos) << loaded.error().message;
      EXPECT_NE(loaded.error().message.find("I/O"), std::string::npos) << loaded.error().message;
      EXPECT_TRUE((*store)->failing()) << "health must see the failing store";
    } else {
      EXPECT_EQ(loaded->size(), complete) << "a read fault must never shorten a list";
    }
    if (!hit) break;
    ASSERT_LT(nth, 10000);
  }
  EXPECT_GT(errors, 1) << "the fault never reached the table";
}

class StateStoreTest : public ::testing::Test {
 protected:
  TempDir dir_;
  std::string path_ = dir_.path() + "/state.db";
};

}  // namespace

TEST_F(StateStoreTest, AReadFaultInKeysOrVersionsIsAnErrorNeverFewerKeys) {
  populate(path_);
  every_read_fault_is_an_error(path_, "table key", kKeys, [](StateStore& s) -> Outcome<std::vector<Key>> {
    auto keys = s.load_keys();
    if (keys) {
      for (const auto& k : *keys) EXPECT_EQ(k.versions.size(), 3u) << k.name;
    }
    return keys;
  });
}

TEST_F(StateStoreTest, AReadFaultInRequestsOrApprovalsIsAnErrorNeverFewerRequests) {
  populate(path_);
  every_read_fault_is_an_error(path_, "table ", kRequests, [](StateStore& s) {
    auto requests = s.load_requests();
    if (requests) {
      for (const auto& r : *requests) EXPECT_EQ(r.approvals.size(), 1u) << r.id;
    }
    return requests;
  });
}

TEST_F(StateStoreTest, AReadFaultInImportJobsIsAnErrorNeverFewerJobs) {
  populate(path_);
  every_read_fault_is_an_error(path_, "table import_jobs", kJobs, [](StateStore& s) { return s.load_jobs(); });
}

TEST_F(StateStoreTest, AReadFaultInIntentsIsAnErrorNeverFewerIntents) {
  populate(path_);
  every_read_fault_is_an_error(path_, "table intents", kIntents, [](StateStore& s) { return s.pending_intents(); });
}

TEST_F(StateStoreTest, AppliedIsAnErrorWhenItCannotBeReadNotNotApplied) {
  {
    auto store = StateStore::open(path_).value();
    ASSERT_TRUE(store->insert_key(make_key("k", 1), 0));
    ASSERT_TRUE(store->set_state("k", KeyState::disabled, std::nullopt, "req-applied"));
    ASSERT_TRUE(*store->applied("req-applied"));
    ASSERT_FALSE(*store->applied("req-other"));
  }
  SqliteFaultVfs vfs;
  auto store = StateStore::open(path_).value();
  vfs.fail(SqliteFaultVfs::Op::read, 1, "state.db", /*sticky=*/true);
  auto applied = store->applied("req-applied");
  ASSERT_GT(vfs.failed(), 0);
  // "false" here would make AdminRequests::recover run an applied operation a second time.
  ASSERT_FALSE(applied) << "a read error was answered " << *applied;
  EXPECT_EQ(applied.error().code, Code::unavailable);
  EXPECT_NE(applied.error().message.find("applied_requests"), std::string::npos) << applied.error().message;
  vfs.heal();
  auto again = store->applied("req-applied");
  ASSERT_TRUE(again) << again.error().message;
  EXPECT_TRUE(*again);
}

TEST_F(StateStoreTest, EncryptionsTellsAMissingRowFromAReadError) {
  {
    auto store = StateStore::open(path_).value();
    ASSERT_TRUE(store->insert_key(make_key("k", 1), 0));
    ASSERT_TRUE(store->set_encryptions("k", 1, 500));
    auto missing = store->encryptions("k", 2);
    ASSERT_FALSE(missing);
    EXPECT_EQ(missing.error().code, Code::not_found);
  }
  SqliteFaultVfs vfs;
  auto store = StateStore::open(path_).value();
  vfs.fail(SqliteFaultVfs::Op::read, 1, "state.db", /*sticky=*/true);
  auto count = store->encryptions("k", 1);
  ASSERT_GT(vfs.failed(), 0);
  ASSERT_FALSE(count);
  EXPECT_EQ(count.error().code, Code::unavailable) << count.error().message;
  EXPECT_NE(count.error().message.find("key_versions"), std::string::npos) << count.error().message;
  vfs.heal();
  EXPECT_EQ(store->encryptions("k", 1).value(), 500u);
}

TEST_F(StateStoreTest, TheStoredUsageCountNeverGoesDown) {
  auto store = StateStore::open(path_).value();
  ASSERT_TRUE(store->insert_key(make_key("k", 1), 0));
  ASSERT_TRUE(store->set_encryptions("k", 1, 1000));
  ASSERT_TRUE(store->set_encryptions("k", 1, 40));
  EXPECT_EQ(store->encryptions("k", 1).value(), 1000u);
  ASSERT_TRUE(store->set_encryptions("k", 1, 1001));
  EXPECT_EQ(store->encryptions("k", 1).value(), 1001u);
}

TEST_F(StateStoreTest, MarkDestroyedRefusesAKeyWithAVersionItWasNotGiven) {
  auto store = StateStore::open(path_).value();
  ASSERT_TRUE(store->insert_key(make_key("k", 3), 0));
  auto marked = store->mark_destroyed("k", {1, 2}, 0);
  ASSERT_FALSE(marked);
  EXPECT_NE(marked.error().message.find("version 3"), std::string::npos) << marked.error().message;
  // Nothing changed: the key and all three versions are as they were.
  auto keys = store->load_keys().value();
  ASSERT_EQ(keys.size(), 1u);
  EXPECT_EQ(keys[0].state, KeyState::enabled);
  for (const auto& v : keys[0].versions) EXPECT_EQ(v.state, "enabled") << v.version;
  ASSERT_TRUE(store->mark_destroyed("k", {1, 2, 3}, 0));
  keys = store->load_keys().value();
  EXPECT_EQ(keys[0].state, KeyState::destroyed);
  for (const auto& v : keys[0].versions) EXPECT_EQ(v.state, "destroyed") << v.version;
}

TEST_F(StateStoreTest, AFailedSyncLosesTheChangeAndSaysSo) {
  auto store = StateStore::open(path_);
  ASSERT_TRUE(store) << store.error();
  {
    SqliteFaultVfs vfs;
    // The faulty VFS serves only connections opened while it is registered.
    auto faulty = StateStore::open(dir_.path() + "/other.db").value();
    vfs.fail(SqliteFaultVfs::Op::sync, 1, "other.db", /*sticky=*/true);
    auto inserted = faulty->insert_key(make_key("k", 1), 0);
    ASSERT_GT(vfs.failed(), 0);
    ASSERT_FALSE(inserted) << "a change that did not reach the disk was acknowledged";
    EXPECT_EQ(inserted.error().code, Code::unavailable);
    ASSERT_TRUE(faulty->failing());
    EXPECT_GE(faulty->errors(), 1u);
    vfs.heal();
    // The store answers again: health stops reporting it.
    ASSERT_TRUE(faulty->load_keys());
    EXPECT_FALSE(faulty->failing());
  }
}

TEST_F(StateStoreTest, AKeyWithoutItsVersionRowsIsRefused) {
  {
    auto store = StateStore::open(path_).value();
    ASSERT_TRUE(store->insert_key(make_key("k", 2), 0));
  }
  // Rows lost below SQLite (a restored partial copy, a page zeroed): the key must not load as if
  // it had fewer versions.
  ASSERT_EQ(run("sqlite3 " + path_ + " \"DELETE FROM key_versions WHERE version = 2\" 2>/dev/null || "
                "python3 -c \"import sqlite3; c=sqlite3.connect('" + path_ +
                "'); c.execute('DELETE FROM key_versions WHERE version = 2'); c.commit()\""),
            0);
  auto store = StateStore::open(path_).value();
  auto keys = store->load_keys();
  ASSERT_FALSE(keys);
  EXPECT_NE(keys.error().message.find("key k"), std::string::npos) << keys.error().message;
}
