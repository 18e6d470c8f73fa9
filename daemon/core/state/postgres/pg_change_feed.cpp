#include "daemon/core/state/postgres/pg_change_feed.h"

#include <poll.h>

#include <cerrno>
#include <cstring>

#include "daemon/core/state/postgres/postgres_state_store.h"

namespace custody::core {

Outcome<std::unique_ptr<PgChangeFeed>> PgChangeFeed::open(const PgSettings& settings) {
  auto conn = PgConnection::open(settings);
  if (!conn) return unexpected(conn.error());
  std::unique_ptr<PgChangeFeed> feed(new PgChangeFeed(std::move(*conn)));
  if (auto r = feed->listen(); !r) return unexpected(r.error());
  return feed;
}

Outcome<void> PgChangeFeed::listen() {
  return conn_->script("listening for changes", (std::string("LISTEN ") + kChangeChannel).c_str());
}

void PgChangeFeed::drain(std::vector<StateChange>& out) {
  while (PGnotify* n = PQnotifies(conn_->raw())) {
    out.push_back(StateChange{n->extra ? n->extra : "", n->be_pid});
    PQfreemem(n);
  }
}

Outcome<std::vector<StateChange>> PgChangeFeed::wait(std::chrono::milliseconds timeout) {
  std::vector<StateChange> out;
  if (conn_->broken()) {
    if (auto r = conn_->ensure_connected(); !r) return unexpected(r.error());
    if (auto r = listen(); !r) return unexpected(r.error());
    resync_due_ = true;
  }
  if (resync_due_) {
    resync_due_ = false;
    out.push_back(StateChange{kResyncChange, 0});
  }
  const auto lost = [&](const std::string& why) -> Outcome<std::vector<StateChange>> {
    resync_due_ = true;
    return fail(Code::unavailable, "state change feed lost its connection: " + why);
  };
  if (PQconsumeInput(conn_->raw()) == 0) return lost(PQerrorMessage(conn_->raw()));
  drain(out);
  if (!out.empty()) return out;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return out;
    pollfd pfd{conn_->socket(), POLLIN, 0};
    if (pfd.fd < 0) return lost("no socket");
    const int ready = ::poll(&pfd, 1, static_cast<int>(left.count()));
    if (ready < 0 && errno == EINTR) continue;
    if (ready < 0) return fail(Code::unavailable, std::string("state change feed: poll: ") + std::strerror(errno));
    if (ready == 0) return out;
    // Readable or hung up: libpq reads what is there and reports a closed connection.
    if (PQconsumeInput(conn_->raw()) == 0 || conn_->broken()) return lost(PQerrorMessage(conn_->raw()));
    drain(out);
    if (!out.empty()) return out;
  }
}

}  // namespace custody::core
