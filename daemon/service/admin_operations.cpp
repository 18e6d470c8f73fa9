#include "daemon/service/admin_operations.h"

#include <boost/json.hpp>

#include "common/admin_operations.h"
#include "common/duration.h"
#include "daemon/core/import/import_jobs.h"
#include "daemon/core/keys/key_json.h"
#include "daemon/service/context.h"
#include "daemon/service/json_body.h"
#include "daemon/service/recovery_handler.h"

namespace custody::service {
namespace {

using core::Code;
using core::fail;

struct Parsed {
  std::string name;
  core::Algorithm algorithm = core::Algorithm::aes_256_gcm;
  core::Policy policy;
  core::RotationPolicy rotation;
  std::int64_t wait_seconds = 0;
  std::uint32_t version = 0;
  bool recovery = false;  // create-key: backed up under a trusted recovery key (CONTRACT §11)
};

// Reads and checks the params of one operation. The fields each operation takes are listed
// here once; anything else is refused by name.
core::Outcome<Parsed> parse(const std::string& op, const boost::json::object& params, std::uint64_t default_usage_limit) {
  Fields f(params, "params.");
  Parsed p;
  p.rotation.usage_limit = default_usage_limit;
  auto need_name = [&]() -> core::Outcome<void> {
    auto name = f.string("name");
    if (!name) return unexpected(name.error());
    if (!core::valid_key_name(*name)) return fail(Code::invalid_argument, "params.name must match ^[a-z0-9][a-z0-9._-]{0,62}$");
    p.name = *name;
    return {};
  };
  core::Outcome<void> shape = {};
  if (op == "create-key") {
    shape = f.only({"name", "algorithm", "policy", "rotation_period", "usage_limit", "recovery"});
    if (!shape) return unexpected(shape.error());
    if (auto n = need_name(); !n) return unexpected(n.error());
    auto alg = f.string("algorithm");
    if (!alg) return unexpected(alg.error());
    auto algorithm = core::parse_algorithm(*alg);
    if (!algorithm || *algorithm == core::Algorithm::aes_256_kwp_transport)
      return fail(Code::invalid_argument,
                  "params.algorithm must be aes-256-gcm or hmac-sha256 (transport keys come in through an import job)");
    p.algorithm = *algorithm;
    const auto* pv = f.get("policy");
    auto policy = core::parse_policy(pv ? *pv : boost::json::value(boost::json::array()));
    if (!policy) return unexpected(policy.error());
    p.policy = std::move(*policy);
    if (const auto* rp = f.get("rotation_period"); rp && !rp->is_null()) {
      auto d = rp->is_string() ? parse_duration(std::string(rp->as_string())) : std::nullopt;
      if (!d || d->count() < 1000)
        return fail(Code::invalid_argument, "params.rotation_period must be a duration such as 90d or 12h");
      p.rotation.period_seconds = d->count() / 1000;
    }
    auto limit = f.number("usage_limit", 1, core::kDefaultUsageLimit);
    if (!limit) return unexpected(limit.error());
    if (*limit) p.rotation.usage_limit = **limit;
    auto recovery = f.boolean("recovery", false);
    if (!recovery) return unexpected(recovery.error());
    p.recovery = *recovery;
    return p;
  }
  if (op == "rotate-key" || op == "disable-key" || op == "enable-key" || op == "cancel-destruction") {
    shape = f.only({"name"});
  } else if (op == "set-policy") {
    shape = f.only({"name", "policy"});
    if (shape) {
      const auto* pv = f.get("policy");
      if (!pv) return fail(Code::invalid_argument, "'params.policy' is required");
      auto policy = core::parse_policy(*pv);
      if (!policy) return unexpected(policy.error());
      p.policy = std::move(*policy);
    }
  } else if (op == "schedule-destruction") {
    shape = f.only({"name", "wait_seconds"});
    if (shape) {
      auto wait = f.number("wait_seconds", 0, 3650ULL * 86400);
      if (!wait) return unexpected(wait.error());
      if (!*wait) return fail(Code::invalid_argument, "'params.wait_seconds' is required");
      p.wait_seconds = static_cast<std::int64_t>(**wait);
    }
  } else if (op == "set-min-decrypt-version") {
    shape = f.only({"name", "version"});
    if (shape) {
      auto v = f.number("version", 1, UINT32_MAX);
      if (!v) return unexpected(v.error());
      if (!*v) return fail(Code::invalid_argument, "'params.version' is required");
      p.version = static_cast<std::uint32_t>(**v);
    }
  } else {
    return fail(Code::invalid_argument, "unknown operation '" + op + "'; one of " + admin_operation_list());
  }
  if (!shape) return unexpected(shape.error());
  if (auto n = need_name(); !n) return unexpected(n.error());
  return p;
}

std::string state_of(const core::Key& key) { return core::key_state_name(key.state); }

// What KeyAdmin would refuse if the operation ran now, checked when it is proposed so that
// operators never sign a request that cannot run. KeyAdmin checks again when it runs: the keys
// can change in between.
core::Outcome<void> check_against_keys(ServiceContext& c, const core::LifecycleSettings& lifecycle, const std::string& op,
                                       const Parsed& p) {
  auto key = c.registry.find(p.name);
  if (op == "create-key") {
    if (key) return fail(Code::failed_precondition, "a key named '" + p.name + "' already exists");
    return {};
  }
  if (!key) return fail(Code::not_found, "no key named '" + p.name + "'");
  const core::KeyState state = key->state;
  const bool enabled_or_disabled = state == core::KeyState::enabled || state == core::KeyState::disabled;
  if (op == "rotate-key" && state != core::KeyState::enabled)
    return fail(Code::failed_precondition, "key '" + p.name + "' is " + state_of(*key) + "; only enabled keys rotate");
  if ((op == "enable-key" || op == "disable-key") && !enabled_or_disabled)
    return fail(Code::failed_precondition, "key '" + p.name + "' is " + state_of(*key) +
                                               (state == core::KeyState::pending_destruction ? "; cancel the destruction first" : ""));
  if (op == "schedule-destruction") {
    if (!enabled_or_disabled) return fail(Code::failed_precondition, "key '" + p.name + "' is already " + state_of(*key));
    if (p.wait_seconds < lifecycle.min_destruction_wait_seconds)
      return fail(Code::invalid_argument, "params.wait_seconds must be at least " +
                                              std::to_string(lifecycle.min_destruction_wait_seconds) +
                                              " (lifecycle.min_destruction_wait)");
  }
  if (op == "cancel-destruction" && state != core::KeyState::pending_destruction)
    return fail(Code::failed_precondition, "key '" + p.name + "' is " + state_of(*key) + ", not scheduled for destruction");
  if (op == "set-policy" && state == core::KeyState::destroyed)
    return fail(Code::failed_precondition, "key '" + p.name + "' is destroyed");
  if (op == "set-min-decrypt-version" && (p.version < key->min_decrypt_version || p.version > key->current_version))
    return fail(Code::failed_precondition, "the minimum decrypt version of '" + p.name + "' can go from " +
                                               std::to_string(key->min_decrypt_version) + " up to the current version " +
                                               std::to_string(key->current_version) + ", not to " + std::to_string(p.version));
  return {};
}

// An import job's transport key must be usable, and a key it would add a version to must take
// imported versions (KeyAdmin::import_version and ImportJobs::create check the same later).
core::Outcome<void> check_import_job(ServiceContext& c, const boost::json::object& params) {
  // ImportJobs::validate has checked the shape: key_name and algorithm are valid strings.
  const std::string name(params.at("key_name").as_string());
  const auto algorithm = core::parse_algorithm(params.at("algorithm").as_string());
  if (const auto* t = params.if_contains("transport_key"); t && t->is_string()) {
    const std::string transport(t->as_string());
    auto key = c.registry.find(transport);
    if (!key) return fail(Code::not_found, "no key named '" + transport + "' (params.transport_key)");
    if (key->algorithm != core::Algorithm::aes_256_kwp_transport || key->state != core::KeyState::enabled)
      return fail(Code::failed_precondition, "'" + transport + "' is not an enabled aes-256-kwp-transport key");
  }
  auto key = c.registry.find(name);
  if (!key) return {};
  for (const auto& v : key->versions)
    if (v.origin != "imported")
      return fail(Code::failed_precondition,
                  "key '" + name + "' was generated in the token; only imported keys take imported versions");
  if (!algorithm || key->algorithm != *algorithm)
    return fail(Code::failed_precondition, "key '" + name + "' is " + core::algorithm_name(key->algorithm));
  if (key->state != core::KeyState::enabled)
    return fail(Code::failed_precondition, "key '" + name + "' is " + state_of(*key));
  return {};
}

}  // namespace

core::Outcome<void> validate_admin_operation(ServiceContext& c, const core::LifecycleSettings& lifecycle,
                                             const std::string& operation, const boost::json::object& params) {
  // Checked against the keys as the (possibly shared) store holds them now, not as this daemon's
  // view last heard of them.
  if (auto fresh = c.key_admin.refresh(); !fresh) return fresh;
  if (is_recovery_operation(operation)) return validate_recovery_operation(c, operation, params);
  if (operation == "create-import-job") {
    if (auto ok = c.jobs->validate(params); !ok) return ok;
    return check_import_job(c, params);
  }
  auto p = parse(operation, params, core::kDefaultUsageLimit);
  if (!p) return unexpected(p.error());
  return check_against_keys(c, lifecycle, operation, *p);
}

core::Outcome<boost::json::object> run_admin_operation(ServiceContext& c, const std::string& op,
                                                       const boost::json::object& params, const std::string& id) {
  if (is_recovery_operation(op)) return run_recovery_operation(c, op, params, id);
  if (op == "create-import-job") {
    auto job = c.jobs->create(params, id);
    if (!job) return unexpected(job.error());
    return boost::json::object{{"import_job", core::job_to_json(*job)}};
  }
  auto p = parse(op, params, c.default_usage_limit);
  if (!p) return unexpected(p.error());
  auto& admin = c.key_admin;
  core::KeyAdmin::KeyResult key = fail(Code::internal, "operation did not run");
  if (op == "create-key") key = admin.create_key(p->name, p->algorithm, std::move(p->policy), p->rotation, id, p->recovery);
  else if (op == "rotate-key") key = admin.rotate_key(p->name, "rotated", id);
  else if (op == "disable-key") key = admin.set_enabled(p->name, false, id);
  else if (op == "enable-key") key = admin.set_enabled(p->name, true, id);
  else if (op == "set-policy") key = admin.set_policy(p->name, std::move(p->policy), id);
  else if (op == "schedule-destruction") key = admin.schedule_destruction(p->name, p->wait_seconds, id);
  else if (op == "cancel-destruction") key = admin.cancel_destruction(p->name, id);
  else if (op == "set-min-decrypt-version") key = admin.set_min_decrypt_version(p->name, p->version, id);
  if (!key) return unexpected(key.error());
  return boost::json::object{{"key", core::key_to_json(**key, c.meter)}};
}

boost::json::object admin_operation_result(ServiceContext& c, const std::string& op, const boost::json::object& params) {
  if (op == "create-import-job") return {};  // the job exists; `GET /v1/admin/import-jobs` shows it
  if (is_recovery_operation(op)) return {};   // a bundle is listed by GET /v1/admin/recovery-bundles/{id}
  const auto* name = params.if_contains("name");
  auto key = name && name->is_string() ? c.registry.find(std::string(name->as_string())) : nullptr;
  if (!key) return {};
  return {{"key", core::key_to_json(*key, c.meter)}};
}

}  // namespace custody::service
