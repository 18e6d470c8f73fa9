// state.db and the -wal/-shm files SQLite keeps next to it are the daemon's alone: 0600 even
// when the daemon runs under umask 022 (outside systemd), and a file an older daemon left open
// to group or others is tightened when it is opened.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include "daemon/core/state/state_store.h"
#include "tests/support/softhsm_token.h"

using namespace custody;
using namespace custody::core;
using namespace custody::test;

namespace {

// Sets the process umask for the life of the object.
class Umask {
 public:
  explicit Umask(mode_t mask) : old_(::umask(mask)) {}
  ~Umask() { ::umask(old_); }

 private:
  mode_t old_;
};

mode_t mode_of(const std::string& path) {
  struct stat st {};
  EXPECT_EQ(::stat(path.c_str(), &st), 0) << path;
  return st.st_mode & 07777;
}

}  // namespace

TEST(StateStoreOpen, FilesAreOwnerOnlyUnderAPermissiveUmask) {
  TempDir dir;
  const std::string path = dir.path() + "/state.db";
  Umask permissive(022);
  auto store = StateStore::open(path);
  ASSERT_TRUE(store) << store.error();
  // WAL mode: the -wal and -shm files exist while the database is open.
  ASSERT_TRUE((*store)->meta("instance_id", "x"));
  for (const std::string& file : {path, path + "-wal", path + "-shm"}) {
    SCOPED_TRACE(file);
    EXPECT_EQ(mode_of(file), 0600);
  }
}

TEST(StateStoreOpen, AnExistingWorldReadableDatabaseIsTightened) {
  TempDir dir;
  const std::string path = dir.path() + "/state.db";
  Umask permissive(022);
  {
    auto store = StateStore::open(path);
    ASSERT_TRUE(store) << store.error();
  }
  ASSERT_EQ(::chmod(path.c_str(), 0644), 0);
  write_file(path + "-wal", "");
  ASSERT_EQ(::chmod((path + "-wal").c_str(), 0666), 0);
  auto store = StateStore::open(path);
  ASSERT_TRUE(store) << store.error();
  EXPECT_EQ(mode_of(path), 0600);
  EXPECT_EQ(mode_of(path + "-wal"), 0600);
}
