#pragma once
// Fault injection for OpenSSL in unit tests: fail the Nth allocation OpenSSL makes, or make its
// random generator fail (or claim success and write nothing). Allocation hooks are installed when
// the test binary loads (OpenSSL accepts them only before its first allocation); the faults are
// armed and disarmed by the scoped objects below. Single-threaded use only.
#include <cstddef>

namespace custody::test::openssl_faults {

// False when OpenSSL refused the allocation hooks (it had allocated before they were installed).
bool allocation_hooks_installed();

// While alive, the allocation number `nth` (0 = the next one) fails, and so does every later one
// when `and_after` is set. fired() says whether the fault was reached.
class FailAllocation {
 public:
  explicit FailAllocation(std::size_t nth, bool and_after = false);
  ~FailAllocation();
  FailAllocation(const FailAllocation&) = delete;
  FailAllocation& operator=(const FailAllocation&) = delete;
  bool fired() const;
};

// While alive, RAND_bytes and RAND_priv_bytes fail (return 0), or with Mode::silent report
// success without writing a byte (a generator that is broken and does not know it).
class FailRandom {
 public:
  enum class Mode { fail, silent };
  explicit FailRandom(Mode mode = Mode::fail);
  ~FailRandom();
  FailRandom(const FailRandom&) = delete;
  FailRandom& operator=(const FailRandom&) = delete;
  int calls() const;  // RAND calls answered by the fault since it was armed
};

}  // namespace custody::test::openssl_faults
