#include "daemon/core/import/import_jobs.h"

#include <algorithm>

#include <boost/json.hpp>
#include <spdlog/spdlog.h>

#include "common/hex.h"
#include "common/random.h"

namespace custody::core {
namespace {

struct JobParams {
  std::string key_name;
  Algorithm algorithm = Algorithm::aes_256_gcm;
  const ImportMethod* method = nullptr;
  std::int64_t expires_in = 86400;
  std::optional<std::string> transport_key;
  Policy policy;
  std::string policy_json = "[]";
};

Outcome<JobParams> parse(const boost::json::object& p, const std::vector<std::string>& offered) {
  JobParams j;
  for (const auto& [k, v] : p)
    if (k != "key_name" && k != "algorithm" && k != "method" && k != "expires_in_seconds" && k != "transport_key" &&
        k != "policy")
      return fail(Code::invalid_argument, "unknown field 'params." + std::string(k) + "'");
  auto text = [&](const char* name) -> std::optional<std::string> {
    const auto* v = p.if_contains(name);
    if (!v || !v->is_string()) return std::nullopt;
    return std::string(v->as_string());
  };
  auto name = text("key_name");
  if (!name || !valid_key_name(*name)) return fail(Code::invalid_argument, "params.key_name must be a key name");
  j.key_name = *name;
  auto alg = text("algorithm");
  auto algorithm = alg ? parse_algorithm(*alg) : std::nullopt;
  if (!algorithm)
    return fail(Code::invalid_argument, "params.algorithm must be aes-256-gcm, hmac-sha256 or aes-256-kwp-transport");
  j.algorithm = *algorithm;
  auto method = text("method");
  j.method = method ? find_import_method(*method) : nullptr;
  if (!j.method) return fail(Code::invalid_argument, "params.method must name an import method");
  if (std::find(offered.begin(), offered.end(), j.method->name) == offered.end()) {
    std::string list;
    for (const auto& m : offered) list += (list.empty() ? "" : ", ") + m;
    return fail(Code::invalid_argument, "this token cannot do " + j.method->name + "; it offers: " + list);
  }
  if (const auto* e = p.if_contains("expires_in_seconds"); e && !e->is_null()) {
    if (!e->is_int64() || e->as_int64() < 1 || e->as_int64() > 30 * 86400)
      return fail(Code::invalid_argument, "params.expires_in_seconds must be 1..2592000");
    j.expires_in = e->as_int64();
  }
  j.transport_key = text("transport_key");
  if (j.method->rsa && j.transport_key) return fail(Code::invalid_argument, "params.transport_key goes with method aes-kwp only");
  if (!j.method->rsa && !j.transport_key) return fail(Code::invalid_argument, "method aes-kwp needs params.transport_key");
  if (!j.method->rsa && j.algorithm == Algorithm::aes_256_kwp_transport)
    return fail(Code::invalid_argument, "a transport key is imported with an rsa-* method");
  if (const auto* pv = p.if_contains("policy"); pv && !pv->is_null()) {
    auto policy = parse_policy(*pv);
    if (!policy) return unexpected(policy.error());
    j.policy = std::move(*policy);
    j.policy_json = boost::json::serialize(*pv);
  }
  return j;
}

}  // namespace

boost::json::object job_to_json(const StoredJob& j) {
  boost::json::object o{{"id", j.id},         {"key_name", j.key_name},
                        {"algorithm", j.algorithm}, {"method", j.method},
                        {"expires_at", rfc3339_seconds(j.expires_at)}, {"state", j.state}};
  if (j.public_key) o["public_key"] = *j.public_key;
  if (j.transport_key) o["transport_key"] = *j.transport_key;
  return o;
}

Outcome<void> ImportJobs::load() {
  std::lock_guard lock(mutex_);
  auto jobs = store_.load_jobs();
  if (!jobs) return unexpected(jobs.error());
  jobs_ = std::move(*jobs);
  return {};
}

Outcome<void> ImportJobs::validate(const boost::json::object& params) {
  auto j = parse(params, importer_.offered_methods());
  if (!j) return unexpected(j.error());
  return {};
}

Outcome<StoredJob> ImportJobs::create(const boost::json::object& params, const std::string& request_id) {
  auto p = parse(params, importer_.offered_methods());
  if (!p) return unexpected(p.error());
  if (p->transport_key) {
    auto t = registry_.find(*p->transport_key);
    if (!t || t->algorithm != Algorithm::aes_256_kwp_transport || t->state != KeyState::enabled)
      return fail(Code::failed_precondition, "'" + *p->transport_key + "' is not an enabled aes-256-kwp-transport key");
  }
  std::lock_guard lock(mutex_);
  StoredJob job;
  std::uint8_t raw[16];
  if (auto ok = fill_random(raw); !ok) return fail(Code::unavailable, "no randomness for the import job id: " + ok.error());
  job.id = hex_lower(raw);
  job.key_name = p->key_name;
  job.algorithm = algorithm_name(p->algorithm);
  job.method = p->method->name;
  job.transport_key = p->transport_key;
  job.state = "active";
  job.created_at = unix_seconds(clock_.now());
  job.expires_at = job.created_at + p->expires_in;
  job.policy = p->policy_json;
  if (p->method->rsa) {
    job.wrapping.id.resize(16);
    if (auto ok = fill_random(job.wrapping.id); !ok)
      return fail(Code::unavailable, "no randomness for the import job key's CKA_ID: " + ok.error());
    job.wrapping.label = std::string(kImportLabelPrefix) + job.id;
    auto pem = importer_.make_wrapping_pair(*p->method, job.wrapping);
    if (!pem) return unexpected(pem.error());
    job.public_key = *pem;
  }
  if (auto ok = store_.insert_job(job, request_id); !ok) {
    if (p->method->rsa) (void)destroy_pair_locked(job.wrapping);
    return unexpected(ok.error());
  }
  jobs_.push_back(job);
  return job;
}

bool ImportJobs::destroy_pair_locked(const ObjectRef& pair) {
  auto it = std::find_if(undestroyed_.begin(), undestroyed_.end(), [&](const auto& u) { return u.first.id == pair.id; });
  auto destroyed = importer_.destroy_wrapping_pair(pair);
  if (destroyed) {
    if (it != undestroyed_.end()) undestroyed_.erase(it);
    return true;
  }
  spdlog::error("ALARM: import job key pair {} is still in the token: {}", pair.label, destroyed.error().message);
  if (it == undestroyed_.end()) undestroyed_.emplace_back(pair, destroyed.error().message);
  else it->second = destroyed.error().message;
  return false;
}

std::vector<std::string> ImportJobs::undestroyed_pairs() {
  std::lock_guard lock(mutex_);
  std::vector<std::string> out;
  for (const auto& [pair, why] : undestroyed_) out.push_back(pair.label + ": " + why);
  return out;
}

StoredJob* ImportJobs::find_locked(const std::string& id) {
  for (auto& j : jobs_)
    if (j.id == id) return &j;
  return nullptr;
}

Outcome<ImportResult> ImportJobs::import(const std::string& id, std::span<const std::uint8_t> wrapped_key,
                                         const std::optional<std::string>& kcv) {
  std::lock_guard lock(mutex_);
  StoredJob* job = find_locked(id);
  if (!job) return fail(Code::not_found, "no import job " + id);
  if (job->state == "active" && unix_seconds(clock_.now()) >= job->expires_at)
    return fail(Code::failed_precondition, "import job " + id + " has expired");
  if (job->state != "active") return fail(Code::failed_precondition, "import job " + id + " is " + job->state);
  const auto algorithm = *parse_algorithm(job->algorithm);
  if (kcv && algorithm == Algorithm::aes_256_kwp_transport)
    return fail(Code::invalid_argument, "a transport key has no KCV custody can compute (it can only unwrap)");
  const ImportMethod* method = find_import_method(job->method);
  if (!method) return fail(Code::internal, "import job " + id + " names an unknown method " + job->method);
  // The policy was checked when the job was made: one that does not parse now is a damaged store,
  // and a key must never get a default policy in its place.
  boost::system::error_code ec;
  auto stored_policy = boost::json::parse(job->policy, ec);
  auto policy = ec ? Outcome<Policy>(fail(Code::internal, "not JSON")) : parse_policy(stored_policy, false);
  if (!policy) return fail(Code::internal, "import job " + id + " has an unreadable stored policy: " + policy.error().message);
  std::optional<ObjectRef> transport;
  if (job->transport_key) {
    auto t = registry_.find(*job->transport_key);
    if (!t || t->state != KeyState::enabled)
      return fail(Code::failed_precondition, "transport key '" + *job->transport_key + "' is not enabled");
    const KeyVersion* current = t->find_version(t->current_version);
    if (!current) return fail(Code::internal, "transport key '" + *job->transport_key + "' has no current version");
    transport = current->object;
  }
  auto key = admin_.import_version(job->key_name, algorithm, *policy,
                                   [&](const ObjectRef& target) -> Outcome<std::optional<std::string>> {
                                     auto in = method->rsa ? importer_.import_rsa(*method, job->wrapping, wrapped_key, algorithm, target)
                                                           : importer_.import_kwp(*transport, wrapped_key, algorithm, target);
                                     if (!in) return unexpected(in.error());
                                     auto computed = importer_.kcv(algorithm, target);
                                     if (!computed) return unexpected(computed.error());
                                     if (kcv && (!*computed || *kcv != **computed))
                                       return fail(Code::invalid_argument,
                                                   "the KCV does not match the imported key; nothing was kept");
                                     return *computed;
                                   },
                                   job->id);
  if (!key) return unexpected(key.error());
  job->state = "used";  // committed together with the key version
  // The import is done and committed; a pair that outlives it is an alarm, retried by expire_due.
  if (method->rsa) (void)destroy_pair_locked(job->wrapping);
  const auto& v = (*key)->versions.back();
  return ImportResult{*key, v.version, v.kcv};
}

std::vector<std::string> ImportJobs::expire_due() {
  std::lock_guard lock(mutex_);
  std::vector<std::string> expired;
  const std::int64_t now = unix_seconds(clock_.now());
  const auto retry = undestroyed_;
  for (const auto& [pair, why] : retry) (void)destroy_pair_locked(pair);
  for (auto& j : jobs_) {
    if (j.state != "active" || now < j.expires_at) continue;
    // Expired means its pair is gone: until the token lets it go, the job stays active (and
    // refuses imports, being past its expiry).
    if (!j.wrapping.id.empty() && !destroy_pair_locked(j.wrapping)) continue;
    if (auto stored = store_.set_job_state(j.id, "expired"); !stored) {
      spdlog::error("import job {}: its key pair is destroyed but it cannot be marked expired: {}", j.id,
                    stored.error().message);
      continue;
    }
    j.state = "expired";
    expired.push_back(j.id);
  }
  return expired;
}

std::vector<ObjectRef> ImportJobs::orphaned_wrapping_keys(const std::vector<ObjectRef>& labelled) {
  std::lock_guard lock(mutex_);
  std::vector<ObjectRef> orphans;
  for (const auto& obj : labelled) {
    bool owned = false;
    for (const auto& j : jobs_) owned = owned || (j.state == "active" && j.wrapping.id == obj.id);
    bool listed = false;
    for (const auto& o : orphans) listed = listed || o.id == obj.id;  // a pair is two objects
    if (!owned && !listed) orphans.push_back(obj);
  }
  return orphans;
}

std::vector<StoredJob> ImportJobs::list() {
  std::lock_guard lock(mutex_);
  return jobs_;
}

Outcome<StoredJob> ImportJobs::get(const std::string& id) {
  std::lock_guard lock(mutex_);
  StoredJob* j = find_locked(id);
  if (!j) return fail(Code::not_found, "no import job " + id);
  return *j;
}

}  // namespace custody::core
