#pragma once
// Dual control (CONTRACT §7): every state-changing admin operation is a request that runs only
// when enough distinct operators have signed its challenge. Requests and approvals are stored
// before they are acknowledged. Execution is exactly-once: the request is marked "executing"
// with the approval that completes the quorum, the operation marks the request applied in the
// same transaction as its change, and recovery after a crash either records the result of an
// applied request or runs an unapplied one.
// Every proposal, approval, cancel and execution is audited (CONTRACT §9) however a crash falls:
// the admin.propose, admin.approve and admin.cancel records are written before what they describe
// is stored, an execution's admin.execute record before the request is marked finished, and
// recovery writes approvals and executions again (marked "recovered") for a request a crash left
// executing. A crash between a record and its commit leaves a record of a change that did not
// take (a proposal whose id answers 404, an approval that does not count, a cancel of a request
// still pending), never a change without its record.
#include <chrono>
#include <functional>
#include <map>
#include <mutex>

#include <boost/json/object.hpp>

#include "daemon/core/audit/audit_event.h"
#include "daemon/core/clock.h"
#include "daemon/core/admin/operators.h"
#include "daemon/core/state/state_store.h"

namespace custody::core {

struct QuorumPolicy {
  std::map<std::string, std::uint32_t> required;  // per operation; absent: 2
  std::uint32_t required_for(const std::string& operation) const;
};

// Who asks: the API request's id and peer, for the audit records AdminRequests writes itself.
struct AdminCaller {
  std::string request_id;
  Peer peer;
};

class AdminRequests {
 public:
  using Validator = std::function<Outcome<void>(const std::string& operation, const boost::json::object& params)>;
  using Executor = std::function<Outcome<boost::json::object>(const std::string& operation,
                                                              const boost::json::object& params, const std::string& request_id)>;
  // The result of a request that was applied before a crash, recomputed from the state.
  using ResultOf = std::function<boost::json::object(const std::string& operation, const boost::json::object& params)>;
  // Writes audit records and waits until they are durable (AuditLog::write); false if it could not.
  using Recorder = std::function<bool(std::vector<AuditEvent> events)>;

  AdminRequests(StateStoreApi& store, OperatorSet operators, QuorumPolicy quorum, const Clock& clock,
                std::string instance_id, std::chrono::seconds ttl, Validator validate, Executor execute, ResultOf result_of,
                Recorder record);

  Outcome<void> load();
  // Good proposals, approvals and cancels are audited here (admin.propose, admin.approve, and
  // admin.execute when an approval completes the quorum, admin.cancel); refused ones are left to
  // the caller to audit. The caller's uid is the proposer's.
  Outcome<StoredRequest> propose(const std::string& operation, const boost::json::object& params, const AdminCaller& caller);
  Outcome<StoredRequest> approve(const std::string& id, const std::string& operator_name, std::string_view signature_b64,
                                 const AdminCaller& caller);
  Outcome<StoredRequest> cancel(const std::string& id, const AdminCaller& caller);
  Outcome<StoredRequest> get(const std::string& id);
  std::vector<StoredRequest> list();
  // Finishes requests a crash left executing and audits them as the daemon (caller); returns
  // what it did.
  Outcome<std::vector<std::string>> recover(const AdminCaller& daemon);

  const OperatorSet& operators() const { return operators_; }
  const QuorumPolicy& quorum() const { return quorum_; }
  const std::string& instance_id() const { return instance_id_; }

 private:
  StoredRequest* find_locked(const std::string& id);
  void expire_locked(StoredRequest& r);
  Outcome<void> execute_locked(StoredRequest& r, const AdminCaller& caller, bool recovered);
  AuditEvent event_for(const StoredRequest& r, const char* type, const AdminCaller& caller) const;

  std::mutex mutex_;
  StateStoreApi& store_;
  OperatorSet operators_;
  QuorumPolicy quorum_;
  const Clock& clock_;
  std::string instance_id_;
  std::chrono::seconds ttl_;
  Validator validate_;
  Executor execute_;
  ResultOf result_of_;
  Recorder record_;
  std::vector<StoredRequest> requests_;
};

// The request as the admin API shows it (without the challenge).
boost::json::object request_to_json(const StoredRequest& r);

}  // namespace custody::core
