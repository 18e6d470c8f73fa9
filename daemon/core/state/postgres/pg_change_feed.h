#pragma once
// Waits for the changes other daemons commit (LISTEN on kChangeChannel, on a connection of its
// own). A daemon applies what it hears at once, and resyncs in full when told it may have missed
// some (the first wait, and after any reconnection: NOTIFY is not queued for a dead listener).
// One thread waits on a feed.
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "daemon/core/state/postgres/pg_connection.h"

namespace custody::core {

struct StateChange {
  std::string what;    // "key:<name>", "request:<id>", "job:<id>", or kResyncChange
  int sender_pid = 0;  // the server process of the connection that made the change
};

// The feed may have missed changes (it just connected): reload everything.
inline constexpr const char* kResyncChange = "resync";

class PgChangeFeed {
 public:
  static Outcome<std::unique_ptr<PgChangeFeed>> open(const PgSettings& settings);

  // The changes that arrived, waiting up to timeout for the first one; empty when none came in
  // time. An error when the connection is lost (never an empty "nothing changed"); the next call
  // reconnects and starts with kResyncChange.
  Outcome<std::vector<StateChange>> wait(std::chrono::milliseconds timeout);
  int backend_pid() const { return conn_->backend_pid(); }

 private:
  explicit PgChangeFeed(std::unique_ptr<PgConnection> conn) : conn_(std::move(conn)) {}
  Outcome<void> listen();
  void drain(std::vector<StateChange>& out);
  std::unique_ptr<PgConnection> conn_;
  bool resync_due_ = true;
};

}  // namespace custody::core
