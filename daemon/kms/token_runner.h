#pragma once
// Runs a gRPC call's core work (DataPlane, hence PKCS#11) where the service socket runs its own:
// main hands over a post function onto the worker pool, which is sized to the session pool. So a
// gRPC thread never makes a token call itself, and the token sees no more callers than it was
// sized for. A call waits at most queue_timeout for its turn; one that did not start by then is
// dropped unrun (the caller hears UNAVAILABLE), one that started is always waited for, since it
// may have used the key and its audit record must follow.
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>

#include "daemon/core/error.h"

namespace custody::kms {

class TokenRunner {
 public:
  using Post = std::function<void(std::function<void()>)>;
  TokenRunner(Post post, std::chrono::milliseconds queue_timeout) : post_(std::move(post)), queue_timeout_(queue_timeout) {}

  // Blocks the calling (gRPC) thread until work has run on the pool, or was dropped unrun.
  template <class T>
  core::Outcome<T> run(std::function<core::Outcome<T>()> work) {
    auto job = std::make_shared<Job<T>>();
    job->work = std::move(work);
    post_([job] {
      {
        std::lock_guard lock(job->mutex);
        if (job->state == State::abandoned) return;
        job->state = State::running;
      }
      auto result = job->work();
      std::lock_guard lock(job->mutex);
      job->result.emplace(std::move(result));
      job->state = State::done;
      job->changed.notify_all();
    });
    std::unique_lock lock(job->mutex);
    if (!job->changed.wait_for(lock, queue_timeout_, [&] { return job->state != State::queued; })) {
      job->state = State::abandoned;
      return core::fail(core::Code::unavailable, "the request waited too long for the token; try again");
    }
    job->changed.wait(lock, [&] { return job->state == State::done; });
    return std::move(*job->result);
  }

 private:
  enum class State { queued, running, done, abandoned };
  template <class T>
  struct Job {
    std::mutex mutex;
    std::condition_variable changed;
    State state = State::queued;
    std::function<core::Outcome<T>()> work;
    std::optional<core::Outcome<T>> result;
  };
  Post post_;
  std::chrono::milliseconds queue_timeout_;
};

}  // namespace custody::kms
