#include "daemon/core/attestation/attestation.h"

#include <boost/json.hpp>

#include "common/admin_operations.h"
#include "common/base64.h"
#include "common/hex.h"
#include "daemon/core/keys/key_json.h"
#include "daemon/core/keys/key_templates.h"
#include "daemon/core/recovery/recovery.h"

namespace custody::core {
namespace {

// The §6 "object" block: id, label and the attributes as the token reported them just now.
boost::json::object object_block(const ObjectRef& ref, Outcome<AttributeReport> report) {
  boost::json::object attributes;
  for (const auto& [name, type] : reported_attributes()) {
    if (report && (*report)[name]) attributes[name] = *(*report)[name];
    else attributes[name] = nullptr;  // not reported by the token (or the object is gone)
  }
  return boost::json::object{{"id", hex_lower(ref.id)}, {"label", ref.label}, {"attributes", std::move(attributes)}};
}

}  // namespace

Outcome<boost::json::object> Attestor::attest(std::span<const std::uint8_t> nonce,
                                              const std::vector<std::shared_ptr<const Key>>& keys) {
  boost::json::object r;
  r["format"] = "custody.attestation.v1";
  r["nonce"] = base64_encode(nonce);
  r["issued_at"] = rfc3339(clock_.now());
  r["daemon"] = {{"version", daemon_.version}, {"instance_id", daemon_.instance_id}, {"config_sha256", daemon_.config_sha256}};
  // In a fleet instance_id is the fleet's (shared in the database); instance is this host's.
  if (fleet_pool_) r["daemon"].as_object()["instance"] = host_id_;
  r["token"] = {{"label", token_.label},
                {"manufacturer", token_.manufacturer},
                {"model", token_.model},
                {"serial", token_.serial},
                {"hardware_version", token_.hardware_version},
                {"firmware_version", token_.firmware_version},
                {"library",
                 {{"path", token_.library_path},
                  {"manufacturer", token_.library_manufacturer},
                  {"description", token_.library_description},
                  {"version", token_.library_version}}}};
  boost::json::array operators;
  for (const auto& op : requests_.operators().all()) operators.push_back({{"name", op.name}, {"key_id", op.key_id}});
  boost::json::object required;
  for (std::string_view op : kAdminOperations) required[op] = requests_.quorum().required_for(std::string(op));
  r["quorum"] = {{"operators", std::move(operators)}, {"required", std::move(required)}};
  r["audit"] = {{"sequence", audit_.sequence()}, {"head", audit_.head()}};
  boost::json::array key_list;
  for (const auto& key : keys) {
    boost::json::array versions;
    for (const auto& v : key->versions) {
      boost::json::object vo = version_to_json(v);
      vo["object"] = object_block(v.object, vault_.attributes(v.object));
      versions.push_back(std::move(vo));
    }
    key_list.push_back({{"name", key->name},
                        {"algorithm", algorithm_name(key->algorithm)},
                        {"state", key_state_name(key->state)},
                        {"current_version", key->current_version},
                        {"recovery", key->recovery},
                        {"versions", std::move(versions)}});
  }
  r["keys"] = std::move(key_list);
  boost::json::array jobs;
  if (jobs_) {
    const std::int64_t now = unix_seconds(clock_.now());
    for (const auto& j : jobs_->list()) {
      if (j.state != "active" || now >= j.expires_at) continue;
      auto o = job_to_json(j);
      if (!j.wrapping.id.empty())
        o["object"] = object_block(j.wrapping, jobs_->importer().wrapping_key_attributes(j.wrapping));
      jobs.push_back(std::move(o));
    }
  }
  r["import_jobs"] = std::move(jobs);
  if (recovery_) {
    // Read live, like the keys' attributes: an auditor sees every key a custody key could be
    // wrapped under, whoever put it there.
    auto trusted = recovery_->token().trusted_keys();
    if (!trusted) return unexpected(trusted.error());
    boost::json::array list;
    for (const auto& t : *trusted) {
      boost::json::object o = object_block(t.object, t.attributes);
      if (t.key_id) o["key_id"] = *t.key_id;
      else o["key_id"] = nullptr;
      list.push_back(std::move(o));
    }
    r["trusted_wrapping_keys"] = std::move(list);
  }
  if (fleet_pool_) {
    // Read live from the shared token, like the keys' attributes: a host that joined since this
    // daemon started is listed, and the signature below covers the list.
    auto instances = list_fleet_instances(*fleet_pool_, host_id_);
    if (!instances) return unexpected(instances.error());
    boost::json::array fleet;
    for (const auto& i : *instances)
      fleet.push_back({{"instance", i.instance}, {"key_id", i.key_id}, {"public_key", i.public_key_pem}});
    r["fleet"] = std::move(fleet);
  }
  const std::string report = boost::json::serialize(r);
  auto signature = key_.sign(report);
  if (!signature) return unexpected(signature.error());
  return boost::json::object{{"report", base64_encode(to_bytes(report))},
                             {"signature", base64_encode(*signature)},
                             {"public_key", key_.public_key_pem()},
                             {"key_id", key_.key_id()}};
}

}  // namespace custody::core
