#include "daemon/core/admin/admin_requests.h"

#include <openssl/rand.h>

#include <boost/json.hpp>

#include "common/base64.h"
#include "common/hex.h"
#include "daemon/core/fault_point.h"

namespace custody::core {
namespace {

bool open_state(const std::string& s) { return s == "pending"; }

// The key an operation is about, for its audit records.
std::optional<std::string> key_named(const boost::json::object& params) {
  for (const char* field : {"name", "key_name"})
    if (const auto* n = params.if_contains(field); n && n->is_string()) return std::string(n->as_string());
  return std::nullopt;
}

boost::json::array approvers(const StoredRequest& r) {
  boost::json::array names;
  for (const auto& a : r.approvals) names.emplace_back(a.operator_name);
  return names;
}

// The version a key-changing operation left current, from its result.
std::optional<std::uint32_t> resulting_version(const boost::json::object& result) {
  const auto* key = result.if_contains("key");
  if (!key || !key->is_object()) return std::nullopt;
  const auto* v = key->as_object().if_contains("current_version");
  if (!v) return std::nullopt;
  boost::system::error_code ec;
  const auto version = v->to_number<std::uint32_t>(ec);
  if (ec) return std::nullopt;
  return version;
}

}  // namespace

std::uint32_t QuorumPolicy::required_for(const std::string& operation) const {
  auto it = required.find(operation);
  return it == required.end() ? 2 : it->second;
}

AdminRequests::AdminRequests(StateStoreApi& store, OperatorSet operators, QuorumPolicy quorum, const Clock& clock,
                             std::string instance_id, std::chrono::seconds ttl, Validator validate, Executor execute,
                             ResultOf result_of, Recorder record)
    : store_(store), operators_(std::move(operators)), quorum_(std::move(quorum)), clock_(clock),
      instance_id_(std::move(instance_id)), ttl_(ttl), validate_(std::move(validate)), execute_(std::move(execute)),
      result_of_(std::move(result_of)), record_(std::move(record)) {}

AuditEvent AdminRequests::event_for(const StoredRequest& r, const char* type, const AdminCaller& caller) const {
  AuditEvent e;
  e.type = type;
  e.request_id = caller.request_id;
  e.client = caller.peer;
  e.operation = r.operation;
  e.key = key_named(boost::json::parse(r.params).as_object());
  e.extra["admin_request"] = r.id;
  return e;
}

Outcome<void> AdminRequests::load() {
  std::lock_guard lock(mutex_);
  auto loaded = store_.load_requests();
  if (!loaded) return unexpected(loaded.error());
  requests_ = std::move(*loaded);
  return {};
}

StoredRequest* AdminRequests::find_locked(const std::string& id) {
  for (auto& r : requests_)
    if (r.id == id) return &r;
  return nullptr;
}

void AdminRequests::expire_locked(StoredRequest& r) {
  if (r.state == "pending" && unix_seconds(clock_.now()) >= r.expires_at) {
    if (store_.finish_request(r.id, "expired", std::nullopt)) r.state = "expired";
  }
}

Outcome<StoredRequest> AdminRequests::propose(const std::string& operation, const boost::json::object& params,
                                              const AdminCaller& caller) {
  if (auto ok = validate_(operation, params); !ok) return unexpected(ok.error());
  std::lock_guard lock(mutex_);
  std::uint8_t id_bytes[16], nonce[32];
  if (RAND_bytes(id_bytes, sizeof id_bytes) != 1 || RAND_bytes(nonce, sizeof nonce) != 1)
    return fail(Code::unavailable, "no randomness for the request id and nonce");
  StoredRequest r;
  r.id = hex_lower(id_bytes);
  r.operation = operation;
  r.params = boost::json::serialize(params);
  r.state = "pending";
  r.created_at = unix_seconds(clock_.now());
  r.expires_at = r.created_at + ttl_.count();
  r.required = quorum_.required_for(operation);
  r.proposer_uid = caller.peer.uid;
  boost::json::object challenge;
  challenge["format"] = "custody.admin-request.v1";
  challenge["id"] = r.id;
  challenge["operation"] = operation;
  challenge["params"] = params;
  challenge["created_at"] = rfc3339_seconds(r.created_at);
  challenge["expires_at"] = rfc3339_seconds(r.expires_at);
  challenge["nonce"] = base64_encode(nonce);
  challenge["instance_id"] = instance_id_;
  r.challenge = boost::json::serialize(challenge);
  // The proposal is audited before it is stored, so no stored request is ever without its
  // admin.propose record. A crash in between leaves a record naming an id that was never stored:
  // a GET of that id answers 404, nothing can approve it (an approval signs the stored challenge)
  // and it cannot come back later (the id is 128 random bits). The proposer got no 201 and
  // proposes again. A store failure without a crash is audited by the caller as a refusal whose
  // message names the id.
  AuditEvent e = event_for(r, "admin.propose", caller);
  e.extra["state"] = r.state;
  if (!record_({e})) return fail(Code::unavailable, "the audit log cannot be written; the proposal was not stored");
  fault_point("admin.after-propose-record");
  if (auto ok = store_.insert_request(r); !ok)
    return fail(ok.error().code, "admin request " + r.id + " was recorded but could not be stored, so it does not exist: " +
                                     ok.error().message);
  fault_point("admin.after-propose-commit");
  requests_.push_back(r);
  return r;
}

Outcome<void> AdminRequests::execute_locked(StoredRequest& r, const AdminCaller& caller, bool recovered) {
  auto params = boost::json::parse(r.params).as_object();
  auto result = execute_(r.operation, params, r.id);
  fault_point("admin.after-execute");
  AuditEvent x = event_for(r, "admin.execute", caller);
  x.extra["approved_by"] = approvers(r);
  if (recovered) x.extra["recovered"] = true;
  boost::json::object outcome;
  std::string state;
  if (result) {
    state = "executed";
    x.version = resulting_version(*result);
    outcome["result"] = std::move(*result);
  } else {
    state = "failed";
    x.result = code_name(result.error().code);
    x.extra["message"] = result.error().message;
    outcome["error"] = {{"code", code_name(result.error().code)}, {"message", result.error().message}};
  }
  // Recorded before the request is marked finished: a crash in between leaves it executing,
  // and recovery records it again rather than not at all.
  if (!record_({x}))
    return fail(Code::unavailable, "request " + r.id + " " + (result ? "ran" : "failed") +
                                       " but the audit log cannot be written; the next start records it");
  fault_point("admin.after-execute-record");
  const std::string text = boost::json::serialize(outcome);
  if (auto ok = store_.finish_request(r.id, state, text); !ok) return ok;
  r.state = state;
  r.outcome = text;
  return {};
}

Outcome<StoredRequest> AdminRequests::approve(const std::string& id, const std::string& operator_name,
                                              std::string_view signature_b64, const AdminCaller& caller) {
  std::lock_guard lock(mutex_);
  // Decided on the request as stored, never on this daemon's view of it: on a fleet the view may
  // miss the proposal or an approval made on another daemon moments ago, and a quorum counted from
  // it would leave the request pending (or run it on an approval that is not the last). The
  // decision is stored only if the request is still as it was read (the store checks under its
  // lock); if another approval came in between, it is made again on the new state.
  constexpr int kAttempts = 3;
  for (int attempt = 1;; ++attempt) {
    auto fresh = store_.load_request(id);
    if (!fresh) return unexpected(fresh.error());
    StoredRequest& r = *fresh;
    if (open_state(r.state) && unix_seconds(clock_.now()) >= r.expires_at) {
      if (StoredRequest* known = find_locked(id)) {
        *known = r;
        expire_locked(*known);
      }
      return fail(Code::failed_precondition, "request " + id + " is expired and accepts no more approvals");
    }
    if (!open_state(r.state))
      return fail(Code::failed_precondition, "request " + id + " is " + r.state + " and accepts no more approvals");
    const Operator* op = operators_.find(operator_name);
    if (!op) return fail(Code::permission_denied, "no operator named '" + operator_name + "'");
    for (const auto& a : r.approvals)
      if (a.operator_name == operator_name)
        return fail(Code::failed_precondition, "operator '" + operator_name + "' has already approved request " + id);
    auto signature = base64_decode(signature_b64);
    if (!signature) return fail(Code::invalid_argument, "the signature is not valid base64");
    if (auto ok = OperatorSet::verify(*op, r.challenge, *signature); !ok) return unexpected(ok.error());

    StoredApproval approval{operator_name, std::string(signature_b64), unix_seconds(clock_.now())};
    const bool quorum = r.approvals.size() + 1 >= r.required;
    const std::string next = quorum ? "executing" : "pending";
    // The approval is audited before it is stored, so no stored approval is ever without its
    // record. A crash, a store failure or a concurrent approval in between leaves a record of an
    // approval that does not count (the failure is audited by the caller too); the operator
    // approves again (or, after a concurrent approval, this loop does).
    AuditEvent e = event_for(r, "admin.approve", caller);
    e.operator_name = operator_name;
    e.extra["state"] = next;
    if (!record_({e})) return fail(Code::unavailable, "the audit log cannot be written; the approval was not stored");
    fault_point("admin.after-approve-record");
    bool changed = false;
    auto stored = store_.approve_request(id, approval, [&](const StoredRequest& now) -> Outcome<std::string> {
      if (now.state != r.state || now.approvals.size() != r.approvals.size()) {
        changed = true;
        return fail(Code::failed_precondition, "request " + id + " changed while operator '" + operator_name +
                                                   "' was approving it; approve again");
      }
      return next;
    });
    if (!stored) {
      if (changed && attempt < kAttempts) continue;
      return unexpected(stored.error());
    }
    StoredRequest* known = find_locked(id);
    if (known) *known = std::move(*stored);
    else known = &requests_.emplace_back(std::move(*stored));
    if (quorum) {
      fault_point("admin.after-quorum");
      if (auto ok = execute_locked(*known, caller, false); !ok) return unexpected(ok.error());
    }
    return *known;
  }
}

Outcome<StoredRequest> AdminRequests::cancel(const std::string& id, const AdminCaller& caller) {
  std::lock_guard lock(mutex_);
  StoredRequest* r = find_locked(id);
  if (!r) return fail(Code::not_found, "no admin request " + id);
  expire_locked(*r);
  if (!open_state(r->state)) return fail(Code::failed_precondition, "request " + id + " is " + r->state + "; it cannot be cancelled");
  // Audited before it is stored, like an approval: no cancelled request is without its
  // admin.cancel record. A crash in between leaves a record of a cancel that did not take: the
  // request is still pending after the restart (any admin.approve records that follow show it),
  // and the canceller, who got no answer, cancels again.
  AuditEvent e = event_for(*r, "admin.cancel", caller);
  e.extra["state"] = "cancelled";
  if (!record_({e})) return fail(Code::unavailable, "the audit log cannot be written; the request was not cancelled");
  fault_point("admin.after-cancel-record");
  if (auto ok = store_.finish_request(id, "cancelled", std::nullopt); !ok)
    return fail(ok.error().code, "the cancel of request " + id + " was recorded but could not be stored; it is still " +
                                     r->state + ": " + ok.error().message);
  fault_point("admin.after-cancel-commit");
  r->state = "cancelled";
  return *r;
}

Outcome<StoredRequest> AdminRequests::get(const std::string& id) {
  std::lock_guard lock(mutex_);
  StoredRequest* r = find_locked(id);
  if (!r) return fail(Code::not_found, "no admin request " + id);
  expire_locked(*r);
  return *r;
}

std::vector<StoredRequest> AdminRequests::list() {
  std::lock_guard lock(mutex_);
  for (auto& r : requests_) expire_locked(r);
  return requests_;
}

Outcome<std::vector<std::string>> AdminRequests::recover(const AdminCaller& daemon) {
  std::lock_guard lock(mutex_);
  std::vector<std::string> done;
  // One request left executing; returns what was done with it.
  auto recover_one = [&](StoredRequest& r) -> Outcome<std::string> {
    auto applied = store_.applied(r.id);
    if (!applied) return unexpected(applied.error());
    // The approvals are stated again from the store: their own records may predate this
    // version's record-before-store order, and this names them next to the execution.
    std::vector<AuditEvent> records;
    for (const auto& a : r.approvals) {
      auto& e = records.emplace_back(event_for(r, "admin.approve", daemon));
      e.operator_name = a.operator_name;
      e.extra["approved_at"] = rfc3339_seconds(a.approved_at);
      e.extra["recovered"] = true;
    }
    if (*applied) {
      auto params = boost::json::parse(r.params).as_object();
      auto result = result_of_(r.operation, params);
      auto& x = records.emplace_back(event_for(r, "admin.execute", daemon));
      x.version = resulting_version(result);
      x.extra["approved_by"] = approvers(r);
      x.extra["recovered"] = true;
      if (!record_(std::move(records))) return fail(Code::unavailable, "the audit log cannot be written");
      const std::string text = boost::json::serialize(boost::json::object{{"result", std::move(result)}});
      if (auto ok = store_.finish_request(r.id, "executed", text); !ok) return unexpected(ok.error());
      r.state = "executed";
      r.outcome = text;
      return "request " + r.id + " (" + r.operation + ") had been applied; recorded as executed";
    }
    if (!record_(std::move(records))) return fail(Code::unavailable, "the audit log cannot be written");
    if (auto ok = execute_locked(r, daemon, true); !ok) return unexpected(ok.error());
    return "request " + r.id + " (" + r.operation + ") had reached its quorum but not run; ran it: " + r.state;
  };
  // A request whose recovery threw (its execution, or params that no longer parse): left
  // executing it would be tried, and throw, at every start and the daemon could never start.
  // It is recorded and stored as failed with the reason; a change it applied says so.
  auto give_up = [&](StoredRequest& r, const std::string& reason) -> Outcome<std::string> {
    auto applied = store_.applied(r.id);
    if (!applied) return unexpected(applied.error());
    const std::string message = "recovery failed: " + reason +
                                (*applied ? " (the change was applied; its result could not be recorded)" : "");
    AuditEvent x = event_for(r, "admin.execute", daemon);
    x.result = code_name(Code::internal);
    x.extra["approved_by"] = approvers(r);
    x.extra["recovered"] = true;
    x.extra["message"] = message;
    if (!record_({x})) return fail(Code::unavailable, "the audit log cannot be written");
    const std::string text = boost::json::serialize(
        boost::json::object{{"error", {{"code", code_name(Code::internal)}, {"message", message}}}});
    if (auto ok = store_.finish_request(r.id, "failed", text); !ok) return unexpected(ok.error());
    r.state = "failed";
    r.outcome = text;
    return "request " + r.id + " (" + r.operation + ") " + message + "; recorded as failed";
  };
  for (auto& r : requests_) {
    // A live fleet member's run is its own to finish.
    if (r.state != "executing" || !store_.recovers_for(r.executor)) continue;
    std::string reason;
    try {
      auto one = recover_one(r);
      if (!one) return unexpected(one.error());
      done.push_back(std::move(*one));
      continue;
    } catch (const std::exception& e) {
      reason = e.what();
    } catch (...) {
      reason = "an unknown exception";
    }
    auto failed = give_up(r, reason);
    if (!failed) return unexpected(failed.error());
    done.push_back(std::move(*failed));
  }
  return done;
}

boost::json::object request_to_json(const StoredRequest& r) {
  boost::json::object o;
  o["id"] = r.id;
  o["operation"] = r.operation;
  o["params"] = boost::json::parse(r.params);
  o["state"] = r.state;
  o["created_at"] = rfc3339_seconds(r.created_at);
  o["expires_at"] = rfc3339_seconds(r.expires_at);
  o["required"] = r.required;
  boost::json::array approvals;
  for (const auto& a : r.approvals) approvals.push_back({{"operator", a.operator_name}, {"approved_at", rfc3339_seconds(a.approved_at)}});
  o["approvals"] = std::move(approvals);
  if (r.outcome) {
    auto outcome = boost::json::parse(*r.outcome).as_object();
    for (auto& [k, v] : outcome) o[k] = v;
  }
  return o;
}

}  // namespace custody::core
