#pragma once
// Crash points for tests of crash safety. When the environment variable CUSTODY_FAULT_POINT
// names a point, the process dies there at once (_exit, like kill -9: nothing flushed, no
// destructors). Unset in production, each point costs one comparison.
namespace custody::core {

void fault_point(const char* name);

}  // namespace custody::core
