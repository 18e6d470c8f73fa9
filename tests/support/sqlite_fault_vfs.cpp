#include "tests/support/sqlite_fault_vfs.h"

#include <cstddef>
#include <cstring>
#include <stdexcept>

namespace custody::test {
namespace {

SqliteFaultVfs* g_active = nullptr;
sqlite3_vfs* g_real = nullptr;

// Our file: the wrapped VFS's file follows it in the same allocation (szOsFile covers both).
struct FaultFile {
  sqlite3_file base;
  sqlite3_file* real;
  std::string* name;
};

sqlite3_file* real_of(sqlite3_file* f) { return reinterpret_cast<FaultFile*>(f)->real; }
const char* name_of(sqlite3_file* f) {
  auto* n = reinterpret_cast<FaultFile*>(f)->name;
  return n ? n->c_str() : "";
}

bool inject(sqlite3_file* f, SqliteFaultVfs::Op op) {
  auto* vfs = SqliteFaultVfs::active();
  return vfs && vfs->should_fail(op, name_of(f));
}

int x_close(sqlite3_file* f) {
  auto* ff = reinterpret_cast<FaultFile*>(f);
  int rc = ff->real->pMethods ? ff->real->pMethods->xClose(ff->real) : SQLITE_OK;
  delete ff->name;
  ff->name = nullptr;
  return rc;
}
int x_read(sqlite3_file* f, void* p, int n, sqlite3_int64 off) {
  if (inject(f, SqliteFaultVfs::Op::read)) return SqliteFaultVfs::active()->error_for(SqliteFaultVfs::Op::read);
  return real_of(f)->pMethods->xRead(real_of(f), p, n, off);
}
int x_write(sqlite3_file* f, const void* p, int n, sqlite3_int64 off) {
  if (inject(f, SqliteFaultVfs::Op::write)) return SqliteFaultVfs::active()->error_for(SqliteFaultVfs::Op::write);
  return real_of(f)->pMethods->xWrite(real_of(f), p, n, off);
}
int x_truncate(sqlite3_file* f, sqlite3_int64 size) { return real_of(f)->pMethods->xTruncate(real_of(f), size); }
int x_sync(sqlite3_file* f, int flags) {
  if (inject(f, SqliteFaultVfs::Op::sync)) return SqliteFaultVfs::active()->error_for(SqliteFaultVfs::Op::sync);
  return real_of(f)->pMethods->xSync(real_of(f), flags);
}
int x_file_size(sqlite3_file* f, sqlite3_int64* size) { return real_of(f)->pMethods->xFileSize(real_of(f), size); }
int x_lock(sqlite3_file* f, int level) { return real_of(f)->pMethods->xLock(real_of(f), level); }
int x_unlock(sqlite3_file* f, int level) { return real_of(f)->pMethods->xUnlock(real_of(f), level); }
int x_check_reserved(sqlite3_file* f, int* out) { return real_of(f)->pMethods->xCheckReservedLock(real_of(f), out); }
int x_file_control(sqlite3_file* f, int op, void* arg) { return real_of(f)->pMethods->xFileControl(real_of(f), op, arg); }
int x_sector_size(sqlite3_file* f) { return real_of(f)->pMethods->xSectorSize(real_of(f)); }
int x_device_characteristics(sqlite3_file* f) { return real_of(f)->pMethods->xDeviceCharacteristics(real_of(f)); }
int x_shm_map(sqlite3_file* f, int page, int size, int extend, void volatile** p) {
  return real_of(f)->pMethods->xShmMap(real_of(f), page, size, extend, p);
}
int x_shm_lock(sqlite3_file* f, int offset, int n, int flags) { return real_of(f)->pMethods->xShmLock(real_of(f), offset, n, flags); }
void x_shm_barrier(sqlite3_file* f) { real_of(f)->pMethods->xShmBarrier(real_of(f)); }
int x_shm_unmap(sqlite3_file* f, int del) { return real_of(f)->pMethods->xShmUnmap(real_of(f), del); }
// No memory-mapped pages: every page comes through xRead, where the faults are.
int x_fetch(sqlite3_file*, sqlite3_int64, int, void** p) {
  *p = nullptr;
  return SQLITE_OK;
}
int x_unfetch(sqlite3_file*, sqlite3_int64, void*) { return SQLITE_OK; }

const sqlite3_io_methods kMethods = {
    3,           x_close,        x_read,        x_write,       x_truncate,     x_sync,
    x_file_size, x_lock,         x_unlock,      x_check_reserved, x_file_control, x_sector_size,
    x_device_characteristics, x_shm_map, x_shm_lock, x_shm_barrier, x_shm_unmap, x_fetch, x_unfetch};

int x_open(sqlite3_vfs*, sqlite3_filename name, sqlite3_file* f, int flags, int* out_flags) {
  auto* ff = reinterpret_cast<FaultFile*>(f);
  ff->real = reinterpret_cast<sqlite3_file*>(reinterpret_cast<char*>(f) + sizeof(FaultFile));
  ff->name = nullptr;
  ff->base.pMethods = nullptr;
  int rc = g_real->xOpen(g_real, name, ff->real, flags, out_flags);
  if (rc != SQLITE_OK) return rc;
  ff->name = new std::string(name ? name : "");
  ff->base.pMethods = &kMethods;
  return SQLITE_OK;
}
int x_delete(sqlite3_vfs*, const char* name, int sync_dir) { return g_real->xDelete(g_real, name, sync_dir); }
int x_access(sqlite3_vfs*, const char* name, int flags, int* out) { return g_real->xAccess(g_real, name, flags, out); }
int x_full_pathname(sqlite3_vfs*, const char* name, int n, char* out) { return g_real->xFullPathname(g_real, name, n, out); }
void* x_dl_open(sqlite3_vfs*, const char* name) { return g_real->xDlOpen(g_real, name); }
void x_dl_error(sqlite3_vfs*, int n, char* out) { g_real->xDlError(g_real, n, out); }
void (*x_dl_sym(sqlite3_vfs*, void* h, const char* sym))(void) { return g_real->xDlSym(g_real, h, sym); }
void x_dl_close(sqlite3_vfs*, void* h) { g_real->xDlClose(g_real, h); }
int x_randomness(sqlite3_vfs*, int n, char* out) { return g_real->xRandomness(g_real, n, out); }
int x_sleep(sqlite3_vfs*, int us) { return g_real->xSleep(g_real, us); }
int x_current_time(sqlite3_vfs*, double* out) { return g_real->xCurrentTime(g_real, out); }
int x_get_last_error(sqlite3_vfs*, int n, char* out) { return g_real->xGetLastError(g_real, n, out); }
int x_current_time_int64(sqlite3_vfs*, sqlite3_int64* out) { return g_real->xCurrentTimeInt64(g_real, out); }

}  // namespace

SqliteFaultVfs::SqliteFaultVfs() {
  if (g_active) throw std::logic_error("one SqliteFaultVfs at a time");
  if (sqlite3_initialize() != SQLITE_OK) throw std::runtime_error("sqlite3_initialize failed");
  previous_default_ = sqlite3_vfs_find(nullptr);
  if (!previous_default_) throw std::runtime_error("SQLite has no default VFS");
  g_real = previous_default_;
  vfs_.iVersion = 2;
  vfs_.szOsFile = static_cast<int>(sizeof(FaultFile)) + g_real->szOsFile;
  vfs_.mxPathname = g_real->mxPathname;
  vfs_.zName = "custody-fault";
  vfs_.xOpen = x_open;
  vfs_.xDelete = x_delete;
  vfs_.xAccess = x_access;
  vfs_.xFullPathname = x_full_pathname;
  vfs_.xDlOpen = x_dl_open;
  vfs_.xDlError = x_dl_error;
  vfs_.xDlSym = x_dl_sym;
  vfs_.xDlClose = x_dl_close;
  vfs_.xRandomness = x_randomness;
  vfs_.xSleep = x_sleep;
  vfs_.xCurrentTime = x_current_time;
  vfs_.xGetLastError = x_get_last_error;
  vfs_.xCurrentTimeInt64 = x_current_time_int64;
  g_active = this;
  if (sqlite3_vfs_register(&vfs_, 1) != SQLITE_OK) {
    g_active = nullptr;
    throw std::runtime_error("sqlite3_vfs_register failed");
  }
}

SqliteFaultVfs::~SqliteFaultVfs() {
  // Databases opened through it must be closed first (the tests' stores go out of scope before).
  sqlite3_vfs_unregister(&vfs_);
  sqlite3_vfs_register(previous_default_, 1);
  g_active = nullptr;
}

SqliteFaultVfs* SqliteFaultVfs::active() { return g_active; }

void SqliteFaultVfs::fail(Op op, int nth, std::string pattern, bool sticky, int error) {
  armed_ = false;
  op_ = op;
  nth_ = nth;
  sticky_ = sticky;
  error_ = error;
  pattern_ = std::move(pattern);
  seen_ = 0;
  failed_ = 0;
  armed_ = true;
}

void SqliteFaultVfs::heal() {
  armed_ = false;
  seen_ = 0;
  failed_ = 0;
}

bool SqliteFaultVfs::should_fail(Op op, const char* file_name) {
  if (!armed_ || op != op_) return false;
  if (!pattern_.empty() && !std::strstr(file_name, pattern_.c_str())) return false;
  const int n = ++seen_;
  if (n == nth_ || (sticky_ && n > nth_)) {
    ++failed_;
    return true;
  }
  return false;
}

int SqliteFaultVfs::error_for(Op op) const {
  if (error_ != 0) return error_;
  switch (op) {
    case Op::read: return SQLITE_IOERR_READ;
    case Op::write: return SQLITE_IOERR_WRITE;
    case Op::sync: return SQLITE_IOERR_FSYNC;
  }
  return SQLITE_IOERR;
}

}  // namespace custody::test
