#pragma once
// Fault points for tests of crash safety and of a fleet's timing. Unset in production, each point
// costs one comparison.
// - CUSTODY_FAULT_POINT=name: the process dies at that point at once (_exit, like kill -9:
//   nothing flushed, no destructors).
// - CUSTODY_FAULT_DELAY=name:milliseconds: the thread passing that point sleeps there first, to
//   hold a window (a change half made, a lagging view) open long enough for a test to use it.
namespace custody::core {

void fault_point(const char* name);

}  // namespace custody::core
