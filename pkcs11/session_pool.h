#pragma once
// A bounded pool of logged-in sessions on one token. A lease gives one session to one thread.
// Errors reported on a lease decide its fate: a session error evicts that session, a device error
// resets the module (finalize, initialize, find the token again, log in again) once every lease
// is back, so service resumes by itself when the token returns.
#include <chrono>
#include <thread>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <utility>
#include <vector>

#include "common/latency_histogram.h"
#include "common/secure_buffer.h"
#include "pkcs11/module.h"
#include "pkcs11/session.h"
#include "pkcs11/token.h"
#include "pkcs11/token_quirks.h"

namespace custody::p11 {

class SessionPool {
 public:
  class Lease {
   public:
    Lease(Lease&& other) noexcept;
    Lease& operator=(Lease&&) = delete;
    ~Lease();
    Session& session() { return *session_; }
    Session* operator->() { return session_.get(); }
    // Tell the pool what a call on this session returned; returns the error for chaining.
    const P11Error& report(const P11Error& error);

   private:
    friend class SessionPool;
    Lease(SessionPool* pool, std::unique_ptr<Session> s, std::uint64_t generation)
        : pool_(pool), session_(std::move(s)), generation_(generation) {}
    SessionPool* pool_;
    std::unique_ptr<Session> session_;
    std::uint64_t generation_;
    bool broken_ = false;
  };

  SessionPool(Module& module, TokenSelector selector, SecureString pin, std::size_t capacity);
  ~SessionPool();

  // Finds the token and logs in; the message says what to fix.
  Expected<void, std::string> start();
  // Starts again on a fresh module (C_Finalize, C_Initialize, login): for start-up code that met a
  // shared-store race (quirks::may_be_a_shared_store_race), with no lease out. Such a token can
  // keep its view of the store invalid until the module is initialised again.
  Expected<void, std::string> restart();
  Result<Lease> acquire(std::chrono::milliseconds timeout = std::chrono::seconds(5));
  // Start-up work that may meet another process's write to a shared store: attempt(may_retry)
  // returns anything that tests false on failure and sets may_retry when the failure may be such a
  // race. It runs again on a fresh module (restart(): no lease may be out), up to
  // quirks::kSharedStoreRaceAttempts times in all, waiting a little longer before each try; the
  // last failure is returned. on_retry(result) is told of each failure tried again.
  template <class Fn, class OnRetry>
  auto retry_on_fresh_module(Fn&& attempt, OnRetry&& on_retry) -> decltype(attempt(std::declval<bool&>()));
  // A start-up read that must see the whole token (an inventory, a listing): on a module whose
  // view of a shared store can go stale, any failure may be another process's write spoiling the
  // view, so fn is tried again on a fresh module. Elsewhere fn runs once.
  template <class Fn>
  auto read_at_start(Fn&& fn) -> decltype(fn());

  // Runs fn(session) -> Result<T> on a leased session. A session or device error is reported
  // (evicting the session, or scheduling a module reset) and fn runs once more on a fresh one.
  template <class T, class Fn>
  Result<T> run(Fn&& fn);

  // Bumped on every module reset: object handles from an older generation are stale.
  std::uint64_t generation() const;
  CK_SLOT_ID slot() const;
  Module& module() { return module_; }
  bool healthy() const;
  // Performs a pending module reset now (when no lease is out and the back-off has passed)
  // instead of waiting for the next acquire; true when the pool is healthy afterwards. A health
  // check calls it: with no traffic, nothing else would ever bring a reset-pending pool back.
  bool try_recover();
  std::string last_error() const;
  // How the token departs from the specification (pkcs11/token_quirks.h); known after start().
  quirks::TokenQuirks quirks() const;
  // On a token whose view of a shared store can go stale (quirks::TokenQuirks), schedules a
  // module restart so that the next call sees what other processes wrote: for a call that must
  // list everything the token holds (the fleet's attestation keys). At most one restart every
  // kStaleViewRestartInterval, apart from restart_for_stale_view's; true when one was scheduled.
  bool refresh_stale_view();
  // For metrics: sessions leased now, open (idle + leased), and the most the pool opens.
  struct Usage {
    std::size_t leased = 0;
    std::size_t open = 0;
    std::size_t capacity = 0;
  };
  Usage usage() const;
  // How long each run() call's fn took on its session (every attempt; not the wait for a lease).
  const LatencyHistogram& call_durations() const { return call_durations_; }

 private:
  void give_back(std::unique_ptr<Session> s, std::uint64_t generation, bool broken);
  Result<std::unique_ptr<Session>> open_session_locked();
  // On a token whose view of a shared store can go stale (quirks::TokenQuirks), schedules a
  // module restart after a failure that may come from such a view; true when run() should try
  // the call once more.
  bool restart_for_stale_view(const P11Error& error);
  bool schedule_view_refresh(const std::string& why, std::chrono::steady_clock::time_point& last);
  // Drops every idle session and the login, and initialises the module again.
  Status restart_module_locked();
  // One try of start(); may_retry says whether its failure may be another process's write
  // (quirks::may_be_a_shared_store_race), never a wrong or locked PIN.
  Expected<void, std::string> start_once(bool& may_retry);
  Status reset_locked();
  Status login_locked(Session& s);

  Module& module_;
  TokenSelector selector_;
  SecureString pin_;
  std::size_t capacity_;

  mutable std::mutex mutex_;
  std::condition_variable available_;
  std::vector<std::unique_ptr<Session>> idle_;
  std::size_t open_count_ = 0;  // idle + leased
  std::size_t leased_ = 0;
  std::uint64_t generation_ = 0;
  CK_SLOT_ID slot_ = 0;
  bool logged_in_ = false;
  bool needs_reset_ = false;
  std::chrono::steady_clock::time_point last_reset_attempt_{};
  std::string last_error_;
  quirks::TokenQuirks quirks_;
  // When a stale view was last refreshed for a listing, and restarted for an object not found.
  std::chrono::steady_clock::time_point last_view_refresh_{};
  std::chrono::steady_clock::time_point last_not_found_restart_{};
  LatencyHistogram call_durations_;
};

template <class Fn, class OnRetry>
auto SessionPool::retry_on_fresh_module(Fn&& attempt, OnRetry&& on_retry) -> decltype(attempt(std::declval<bool&>())) {
  for (int tries = 1;; ++tries) {
    bool may_retry = false;
    auto result = attempt(may_retry);
    if (result || !may_retry || tries == quirks::kSharedStoreRaceAttempts) return result;
    on_retry(result);
    std::this_thread::sleep_for(std::chrono::milliseconds(100 * tries));
    if (!restart()) return result;
  }
}

template <class Fn>
auto SessionPool::read_at_start(Fn&& fn) -> decltype(fn()) {
  return retry_on_fresh_module(
      [&](bool& may_retry) {
        may_retry = quirks().store_view_can_go_stale;
        return fn();
      },
      [](const auto&) {});
}

template <class T, class Fn>
Result<T> SessionPool::run(Fn&& fn) {
  Result<T> result = unexpected(P11Error{CKR_GENERAL_ERROR, "SessionPool::run"});
  for (int attempt = 0; attempt < 2; ++attempt) {
    auto lease = acquire();
    if (!lease) return unexpected(lease.error());
    {
      ScopedLatency timed(call_durations_);
      result = fn(lease->session());
    }
    if (result) return result;
    lease->report(result.error());
    if (result.error().severity() == Severity::operation) {
      if (attempt == 0 && restart_for_stale_view(result.error())) continue;
      return result;
    }
  }
  return result;
}

}  // namespace custody::p11
