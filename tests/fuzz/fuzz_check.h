#pragma once
// A broken invariant is a crash: libFuzzer saves the input that caused it and prints its path.
#include <cstdio>
#include <cstdlib>
#include <string>

namespace custody::fuzz {

[[noreturn]] inline void broken(const std::string& what) {
  // fwrite, not %s: the message may quote input bytes, NULs included.
  std::fputs("fuzz invariant broken: ", stderr);
  std::fwrite(what.data(), 1, what.size(), stderr);
  std::fputc('\n', stderr);
  std::fflush(stderr);
  std::abort();
}
inline void check(bool ok, const std::string& what) {
  if (!ok) broken(what);
}

}  // namespace custody::fuzz
