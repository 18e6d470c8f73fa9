// OpenSSL 3.0 offers no RNG fault hook besides the (deprecated, still supported) RAND_METHOD:
// RAND_bytes_ex calls a method set with RAND_set_rand_method instead of its DRBG.
#define OPENSSL_SUPPRESS_DEPRECATED
#include "tests/support/openssl_faults.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include <atomic>
#include <cstdlib>
#include <stdexcept>

namespace custody::test::openssl_faults {
namespace {

constexpr std::size_t kDisarmed = static_cast<std::size_t>(-1);
std::atomic<std::size_t> countdown{kDisarmed};
std::atomic<bool> fail_after{false};
std::atomic<bool> fired_flag{false};
bool hooks_installed = false;

bool should_fail() {
  std::size_t left = countdown.load(std::memory_order_relaxed);
  if (left == kDisarmed) return false;
  if (left == 0) {
    fired_flag = true;
    if (!fail_after) countdown = kDisarmed;
    return true;
  }
  countdown = left - 1;
  return false;
}

void* hooked_malloc(std::size_t n, const char*, int) { return should_fail() ? nullptr : std::malloc(n); }
void* hooked_realloc(void* p, std::size_t n, const char*, int) { return should_fail() ? nullptr : std::realloc(p, n); }
void hooked_free(void* p, const char*, int) { std::free(p); }

// Runs when the test binary loads, before anything in it has used OpenSSL.
__attribute__((constructor(101))) void install_allocation_hooks() {
  hooks_installed = CRYPTO_set_mem_functions(hooked_malloc, hooked_realloc, hooked_free) == 1;
}

enum class RandomFault { none, fail, silent };
std::atomic<RandomFault> random_fault{RandomFault::none};
std::atomic<int> random_calls{0};

int fault_bytes(unsigned char*, int) {
  ++random_calls;
  return random_fault == RandomFault::silent ? 1 : 0;
}
int fault_status() { return random_fault == RandomFault::silent ? 1 : 0; }
int fault_seed(const void*, int) { return 1; }
int fault_add(const void*, int, double) { return 1; }

RAND_METHOD fault_method = {fault_seed, fault_bytes, nullptr, fault_add, fault_bytes, fault_status};

}  // namespace

bool allocation_hooks_installed() { return hooks_installed; }

FailAllocation::FailAllocation(std::size_t nth, bool and_after) {
  fired_flag = false;
  fail_after = and_after;
  countdown = nth;
}
FailAllocation::~FailAllocation() { countdown = kDisarmed; }
bool FailAllocation::fired() const { return fired_flag; }

FailRandom::FailRandom(Mode mode) {
  random_calls = 0;
  random_fault = mode == Mode::silent ? RandomFault::silent : RandomFault::fail;
  if (RAND_set_rand_method(&fault_method) != 1) throw std::runtime_error("RAND_set_rand_method failed");
}
FailRandom::~FailRandom() {
  random_fault = RandomFault::none;
  RAND_set_rand_method(nullptr);  // back to OpenSSL's own generator
}
int FailRandom::calls() const { return random_calls; }

}  // namespace custody::test::openssl_faults
