#pragma once
// The time seam's test side: a clock that moves only when told.
#include <atomic>

#include "daemon/core/clock.h"

namespace custody::test {

class FakeClock final : public core::Clock {
 public:
  FakeClock() : now_(std::chrono::system_clock::now().time_since_epoch().count()) {}
  std::chrono::system_clock::time_point now() const override {
    return std::chrono::system_clock::time_point(std::chrono::system_clock::duration(now_.load()));
  }
  void advance(std::chrono::seconds by) {
    now_ += std::chrono::duration_cast<std::chrono::system_clock::duration>(by).count();
  }

 private:
  std::atomic<std::chrono::system_clock::rep> now_;
};

}  // namespace custody::test
