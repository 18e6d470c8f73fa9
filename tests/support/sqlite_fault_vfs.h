#pragma once
// SQLite fault injection for in-process tests: a VFS that wraps the default one and makes the Nth
// read, write or sync of a file whose name contains a pattern fail, as a bad sector, a full disk
// or a failing fsync would. While a SqliteFaultVfs lives it is the default VFS, so the code under
// test (StateStore::open) uses it unchanged. One at a time per process.
#include <sqlite3.h>

#include <atomic>
#include <string>

namespace custody::test {

class SqliteFaultVfs {
 public:
  enum class Op { read, write, sync };

  SqliteFaultVfs();
  ~SqliteFaultVfs();
  SqliteFaultVfs(const SqliteFaultVfs&) = delete;
  SqliteFaultVfs& operator=(const SqliteFaultVfs&) = delete;

  // From now on, the nth (1-based) op on a file whose name contains pattern ("" = any file)
  // fails with error; with sticky, every later one fails too (a bad sector stays bad).
  void fail(Op op, int nth, std::string pattern = "", bool sticky = false, int error = 0);
  // No more faults; counters reset.
  void heal();
  // Ops of the armed kind on matching files since fail(), and how many were failed.
  int seen() const { return seen_.load(); }
  int failed() const { return failed_.load(); }

  // For the VFS callbacks.
  static SqliteFaultVfs* active();
  bool should_fail(Op op, const char* file_name);
  int error_for(Op op) const;

 private:
  sqlite3_vfs vfs_{};
  sqlite3_vfs* previous_default_ = nullptr;
  std::atomic<bool> armed_{false};
  Op op_ = Op::read;
  int nth_ = 0;
  bool sticky_ = false;
  int error_ = 0;
  std::string pattern_;
  std::atomic<int> seen_{0};
  std::atomic<int> failed_{0};
};

}  // namespace custody::test
