#include "daemon/core/admin_requests.h"

#include <openssl/rand.h>

#include <boost/json.hpp>

#include "common/base64.h"
#include "common/hex.h"
#include "daemon/core/fault_point.h"

namespace custody::core {
namespace {

bool open_state(const std::string& s) { return s == "pending"; }

}  // namespace

std::uint32_t QuorumPolicy::required_for(const std::string& operation) const {
  auto it = required.find(operation);
  return it == required.end() ? 2 : it->second;
}

AdminRequests::AdminRequests(StateStore& store, OperatorSet operators, QuorumPolicy quorum, const Clock& clock,
                             std::string instance_id, std::chrono::seconds ttl, Validator validate, Executor execute,
                             ResultOf result_of)
    : store_(store), operators_(std::move(operators)), quorum_(std::move(quorum)), clock_(clock),
      instance_id_(std::move(instance_id)), ttl_(ttl), validate_(std::move(validate)), execute_(std::move(execute)),
      result_of_(std::move(result_of)) {}

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
                                              std::uint32_t proposer_uid) {
  if (auto ok = validate_(operation, params); !ok) return unexpected(ok.error());
  std::lock_guard lock(mutex_);
  std::uint8_t id_bytes[16], nonce[32];
  RAND_bytes(id_bytes, sizeof id_bytes);
  RAND_bytes(nonce, sizeof nonce);
  StoredRequest r;
  r.id = hex_lower(id_bytes);
  r.operation = operation;
  r.params = boost::json::serialize(params);
  r.state = "pending";
  r.created_at = unix_seconds(clock_.now());
  r.expires_at = r.created_at + ttl_.count();
  r.required = quorum_.required_for(operation);
  r.proposer_uid = proposer_uid;
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
  if (auto ok = store_.insert_request(r); !ok) return unexpected(ok.error());
  requests_.push_back(r);
  return r;
}

Outcome<void> AdminRequests::execute_locked(StoredRequest& r) {
  auto params = boost::json::parse(r.params).as_object();
  auto result = execute_(r.operation, params, r.id);
  fault_point("admin.after-execute");
  boost::json::object outcome;
  std::string state;
  if (result) {
    state = "executed";
    outcome["result"] = std::move(*result);
  } else {
    state = "failed";
    outcome["error"] = {{"code", code_name(result.error().code)}, {"message", result.error().message}};
  }
  const std::string text = boost::json::serialize(outcome);
  if (auto ok = store_.finish_request(r.id, state, text); !ok) return ok;
  r.state = state;
  r.outcome = text;
  return {};
}

Outcome<StoredRequest> AdminRequests::approve(const std::string& id, const std::string& operator_name,
                                              std::string_view signature_b64) {
  std::lock_guard lock(mutex_);
  StoredRequest* r = find_locked(id);
  if (!r) return fail(Code::not_found, "no admin request " + id);
  expire_locked(*r);
  if (!open_state(r->state))
    return fail(Code::failed_precondition, "request " + id + " is " + r->state + " and accepts no more approvals");
  const Operator* op = operators_.find(operator_name);
  if (!op) return fail(Code::permission_denied, "no operator named '" + operator_name + "'");
  for (const auto& a : r->approvals)
    if (a.operator_name == operator_name)
      return fail(Code::failed_precondition, "operator '" + operator_name + "' has already approved request " + id);
  auto signature = base64_decode(signature_b64);
  if (!signature) return fail(Code::invalid_argument, "the signature is not valid base64");
  if (auto ok = OperatorSet::verify(*op, r->challenge, *signature); !ok) return unexpected(ok.error());

  StoredApproval approval{operator_name, std::string(signature_b64), unix_seconds(clock_.now())};
  const bool quorum = r->approvals.size() + 1 >= r->required;
  const std::string next = quorum ? "executing" : "pending";
  if (auto ok = store_.add_approval(id, approval, next); !ok) return unexpected(ok.error());
  r->approvals.push_back(approval);
  r->state = next;
  if (quorum) {
    fault_point("admin.after-quorum");
    if (auto ok = execute_locked(*r); !ok) return unexpected(ok.error());
  }
  return *r;
}

Outcome<StoredRequest> AdminRequests::cancel(const std::string& id) {
  std::lock_guard lock(mutex_);
  StoredRequest* r = find_locked(id);
  if (!r) return fail(Code::not_found, "no admin request " + id);
  expire_locked(*r);
  if (!open_state(r->state)) return fail(Code::failed_precondition, "request " + id + " is " + r->state + "; it cannot be cancelled");
  if (auto ok = store_.finish_request(id, "cancelled", std::nullopt); !ok) return unexpected(ok.error());
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

Outcome<std::vector<std::string>> AdminRequests::recover() {
  std::lock_guard lock(mutex_);
  std::vector<std::string> done;
  for (auto& r : requests_) {
    if (r.state != "executing") continue;
    auto applied = store_.applied(r.id);
    if (!applied) return unexpected(applied.error());
    if (*applied) {
      auto params = boost::json::parse(r.params).as_object();
      const std::string text = boost::json::serialize(boost::json::object{{"result", result_of_(r.operation, params)}});
      if (auto ok = store_.finish_request(r.id, "executed", text); !ok) return unexpected(ok.error());
      r.state = "executed";
      r.outcome = text;
      done.push_back("request " + r.id + " (" + r.operation + ") had been applied; recorded as executed");
    } else {
      if (auto ok = execute_locked(r); !ok) return unexpected(ok.error());
      done.push_back("request " + r.id + " (" + r.operation + ") had reached its quorum but not run; ran it: " + r.state);
    }
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
