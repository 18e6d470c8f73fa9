#pragma once
// Many keys through the admin API, as fast as it honestly goes: the scale daemon is configured
// with a quorum of one approval for create-key and rotate-key (the configuration allows it for
// these two operations), and several admin connections propose and approve in parallel. Each
// key still goes through the whole request → signed approval → execution path, token and audit.
#include <functional>
#include <string>

#include "common/expected.h"
#include "tests/support/daemon_process.h"

namespace custody::bench {

// The dual_control lines the factory needs in the daemon's configuration.
inline constexpr const char* kOneApprovalForKeys = "  quorum: {create-key: 1, rotate-key: 1}\n";

struct KeyBatch {
  std::string name_prefix;  // keys are prefix0, prefix1, …
  unsigned first = 0, count = 0;
  unsigned versions = 1;  // 1 + the rotations made
  unsigned threads = 4;   // admin connections in parallel
};

// Calls progress(keys done) now and then; the first error stops every thread.
Expected<void, std::string> make_keys(test::Daemon& daemon, const KeyBatch& batch,
                                      const std::function<void(unsigned)>& progress);

}  // namespace custody::bench
