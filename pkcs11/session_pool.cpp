#include "pkcs11/session_pool.h"

#include <thread>

namespace custody::p11 {
namespace {
// While the token is away, try to get it back at most this often rather than on every request.
constexpr auto kResetBackoff = std::chrono::milliseconds(500);
constexpr auto kStaleViewRestartInterval = std::chrono::seconds(5);
}

SessionPool::Lease::Lease(Lease&& other) noexcept
    : pool_(other.pool_), session_(std::move(other.session_)), generation_(other.generation_),
      broken_(other.broken_) {
  other.pool_ = nullptr;
}

SessionPool::Lease::~Lease() {
  if (pool_ && session_) pool_->give_back(std::move(session_), generation_, broken_);
}

const P11Error& SessionPool::Lease::report(const P11Error& error) {
  switch (error.severity()) {
    case Severity::operation:
      break;
    case Severity::session: {
      // A session that went bad rarely goes alone (the token closed them all, or logged out):
      // drop the idle ones too and log in again on the next session opened. C_Login answers
      // CKR_USER_ALREADY_LOGGED_IN when the login was in fact still there.
      broken_ = true;
      std::lock_guard lock(pool_->mutex_);
      pool_->open_count_ -= pool_->idle_.size();
      pool_->idle_.clear();
      pool_->logged_in_ = false;
      break;
    }
    case Severity::device: {
      broken_ = true;
      std::lock_guard lock(pool_->mutex_);
      pool_->needs_reset_ = true;
      pool_->last_error_ = error.describe();
      break;
    }
  }
  return error;
}

SessionPool::SessionPool(Module& module, TokenSelector selector, SecureString pin, std::size_t capacity)
    : module_(module), selector_(std::move(selector)), pin_(std::move(pin)), capacity_(capacity ? capacity : 1) {}

SessionPool::~SessionPool() {
  std::lock_guard lock(mutex_);
  idle_.clear();
}

Expected<void, std::string> SessionPool::start() {
  // Daemons starting together on one token (a fleet) can catch it in the middle of another
  // process's write, which a few tries get past (p11::quirks::may_be_a_shared_store_race).
  // SoftHSMv2 keeps such a view of the token invalid for as long as the module is initialised.
  for (int attempt = 1;; ++attempt) {
    bool may_retry = false;
    auto started = start_once(may_retry);
    if (started || !may_retry || attempt == quirks::kSharedStoreRaceAttempts) return started;
    std::this_thread::sleep_for(std::chrono::milliseconds(100 * attempt));
    std::lock_guard lock(mutex_);
    if (auto st = restart_module_locked(); !st)
      return unexpected("cannot initialise the token module again: " + st.error().describe());
  }
}

Expected<void, std::string> SessionPool::restart() {
  {
    std::lock_guard lock(mutex_);
    if (leased_ != 0) return unexpected(std::string("the token module cannot start again while a session is in use"));
    if (auto st = restart_module_locked(); !st)
      return unexpected("cannot initialise the token module again: " + st.error().describe());
  }
  return start();
}

bool SessionPool::restart_for_stale_view(const P11Error& error) {
  // Only an object not found: CKR_GENERAL_ERROR is also how SoftHSMv2 answers a forged
  // ciphertext, which must never make the module start again. At most one restart every
  // kStaleViewRestartInterval, so a peer asking again and again for a key whose object is really
  // gone cannot keep the pool restarting.
  if (error.fault != Fault::not_found) return false;
  return schedule_view_refresh(error.describe() + " (the token's view of its store may be stale; starting the module again)",
                               last_not_found_restart_);
}

bool SessionPool::refresh_stale_view() {
  // Its own budget: the fresh view can itself miss an object (SoftHSMv2 lists the store while
  // another process writes it), and the call after it must still be able to look again.
  return schedule_view_refresh("refreshing the token's view of its store (starting the module again)",
                               last_view_refresh_);
}

bool SessionPool::schedule_view_refresh(const std::string& why, std::chrono::steady_clock::time_point& last) {
  std::lock_guard lock(mutex_);
  const auto now = std::chrono::steady_clock::now();
  if (!quirks_.store_view_can_go_stale || now - last < kStaleViewRestartInterval) return false;
  last = now;
  needs_reset_ = true;
  // Not a device failure: the restart is due now, not after kResetBackoff from the last one.
  last_reset_attempt_ = {};
  last_error_ = why;
  return true;
}

Status SessionPool::restart_module_locked() {
  open_count_ -= idle_.size();
  idle_.clear();
  logged_in_ = false;
  ++generation_;
  return module_.reset();
}

Expected<void, std::string> SessionPool::start_once(bool& may_retry) {
  std::lock_guard lock(mutex_);
  bool inconclusive = false;
  auto slot = find_slot(module_.api(), selector_, &inconclusive);
  if (!slot) {
    // Such a token can also read as one without its label for a moment; a wrong label is final.
    may_retry = inconclusive;
    return unexpected(slot.error());
  }
  slot_ = *slot;
  auto info = token_info(module_.api(), slot_);
  if (!info) {
    may_retry = quirks::may_be_a_shared_store_race(info.error().rv);
    return unexpected("cannot read the token's information: " + info.error().describe());
  }
  quirks_ = quirks::quirks_of(info->manufacturer, info->model);
  auto s = open_session_locked();
  if (!s) {
    if (s.error().rv == CKR_PIN_INCORRECT) return unexpected(std::string("the token PIN is wrong (CKR_PIN_INCORRECT)"));
    if (s.error().rv == CKR_PIN_LOCKED) return unexpected(std::string("the token PIN is locked (CKR_PIN_LOCKED)"));
    may_retry = quirks::may_be_a_shared_store_race(s.error().rv);
    return unexpected("cannot open a logged-in session: " + s.error().describe());
  }
  idle_.push_back(std::move(*s));
  return {};
}

Status SessionPool::login_locked(Session& s) {
  if (logged_in_) return {};
  if (auto st = s.login_user(std::string_view(pin_.data(), pin_.size())); !st) return st;
  logged_in_ = true;
  return {};
}

Result<std::unique_ptr<Session>> SessionPool::open_session_locked() {
  auto s = Session::open(module_.api(), slot_);
  if (!s) return unexpected(s.error());
  auto session = std::make_unique<Session>(std::move(*s));
  if (auto st = login_locked(*session); !st) return unexpected(st.error());
  ++open_count_;
  return session;
}

Status SessionPool::reset_locked() {
  last_reset_attempt_ = std::chrono::steady_clock::now();
  if (auto st = restart_module_locked(); !st) {
    last_error_ = st.error().describe();
    return st;
  }
  auto slot = find_slot(module_.api(), selector_);
  if (!slot) {
    last_error_ = slot.error();
    return unexpected(P11Error{CKR_TOKEN_NOT_PRESENT, "find_slot"});
  }
  slot_ = *slot;
  needs_reset_ = false;
  last_error_.clear();
  return {};
}

Result<SessionPool::Lease> SessionPool::acquire(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mutex_);
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (needs_reset_) {
      // Stale leases must come back before the module can be finalized under them.
      if (leased_ == 0 && std::chrono::steady_clock::now() - last_reset_attempt_ >= kResetBackoff) {
        if (auto st = reset_locked(); !st) return unexpected(st.error());
      } else if (leased_ == 0) {
        return unexpected(own_fault(Fault::pool_resetting, "SessionPool::acquire"));
      }
    }
    if (!needs_reset_) {
      if (!idle_.empty()) {
        auto s = std::move(idle_.back());
        idle_.pop_back();
        ++leased_;
        return Lease(this, std::move(s), generation_);
      }
      if (open_count_ < capacity_) {
        auto s = open_session_locked();
        if (!s) {
          if (s.error().severity() == Severity::device) {
            needs_reset_ = true;
            last_error_ = s.error().describe();
          }
          return unexpected(s.error());
        }
        ++leased_;
        return Lease(this, std::move(*s), generation_);
      }
    }
    if (available_.wait_until(lock, deadline) == std::cv_status::timeout)
      return unexpected(own_fault(Fault::pool_timeout, "SessionPool::acquire"));
  }
}

void SessionPool::give_back(std::unique_ptr<Session> s, std::uint64_t generation, bool broken) {
  {
    std::lock_guard lock(mutex_);
    --leased_;
    if (broken || generation != generation_ || needs_reset_) {
      if (generation == generation_) --open_count_;
      s.reset();
    } else {
      idle_.push_back(std::move(s));
    }
  }
  available_.notify_one();
}

std::uint64_t SessionPool::generation() const {
  std::lock_guard lock(mutex_);
  return generation_;
}

SessionPool::Usage SessionPool::usage() const {
  std::lock_guard lock(mutex_);
  return Usage{leased_, open_count_, capacity_};
}

CK_SLOT_ID SessionPool::slot() const {
  std::lock_guard lock(mutex_);
  return slot_;
}

bool SessionPool::healthy() const {
  std::lock_guard lock(mutex_);
  return !needs_reset_;
}

bool SessionPool::try_recover() {
  std::lock_guard lock(mutex_);
  if (!needs_reset_) return true;
  if (leased_ != 0 || std::chrono::steady_clock::now() - last_reset_attempt_ < kResetBackoff) return false;
  return static_cast<bool>(reset_locked());
}

std::string SessionPool::last_error() const {
  std::lock_guard lock(mutex_);
  return last_error_;
}

quirks::TokenQuirks SessionPool::quirks() const {
  std::lock_guard lock(mutex_);
  return quirks_;
}

}  // namespace custody::p11
