#pragma once
// BYOK import jobs (CONTRACT §8). A job is created by a dual-control request: for the rsa-*
// methods it holds an RSA key pair made in the token whose private half can only unwrap. It is
// single use and expires (default 24 h); its key pair is destroyed when it is used or expires,
// also across restarts. A wrong KCV or payload leaves nothing behind and the job stays usable.
// A pair the token will not destroy is never taken for destroyed: an expiring job stays active,
// and every such pair is an alarm (undestroyed_pairs) retried by expire_due until it is gone.
#include <boost/json/object.hpp>
#include <mutex>

#include "daemon/core/keys/key_admin.h"
#include "daemon/core/import/token_importer.h"

namespace custody::core {

inline constexpr std::string_view kImportLabelPrefix = "custody-import:";

struct ImportResult {
  std::shared_ptr<const Key> key;
  std::uint32_t version = 0;
  std::optional<std::string> kcv;
};

class ImportJobs {
 public:
  ImportJobs(StateStoreApi& store, TokenImporter& importer, KeyRegistry& registry, KeyAdmin& admin, const Clock& clock)
      : store_(store), importer_(importer), registry_(registry), admin_(admin), clock_(clock) {}

  Outcome<void> load();
  // params: key_name, algorithm, method, expires_in_seconds, transport_key (aes-kwp), policy.
  Outcome<void> validate(const boost::json::object& params);
  Outcome<StoredJob> create(const boost::json::object& params, const std::string& request_id);
  Outcome<ImportResult> import(const std::string& id, std::span<const std::uint8_t> wrapped_key,
                               const std::optional<std::string>& kcv);
  // Destroys the key pairs of due jobs and marks them expired; returns their ids. Also retries
  // the pairs in undestroyed_pairs().
  std::vector<std::string> expire_due();
  // Key pairs custody meant to destroy that are still in the token, "label: why"; for health.
  std::vector<std::string> undestroyed_pairs();
  // Of the token objects labelled kImportLabelPrefix, those no active job owns, once each: left by
  // a crash between making a job's key pair and storing the job (the job never existed for
  // anyone), or between using a job and destroying its pair. Start-up destroys them.
  std::vector<ObjectRef> orphaned_wrapping_keys(const std::vector<ObjectRef>& labelled);
  std::vector<StoredJob> list();
  Outcome<StoredJob> get(const std::string& id);
  std::vector<std::string> offered_methods() { return importer_.offered_methods(); }
  TokenImporter& importer() { return importer_; }

 private:
  StoredJob* find_locked(const std::string& id);
  // Destroys a job's pair; on failure logs it and keeps it in undestroyed_ until it goes.
  bool destroy_pair_locked(const ObjectRef& pair);

  std::mutex mutex_;
  StateStoreApi& store_;
  TokenImporter& importer_;
  KeyRegistry& registry_;
  KeyAdmin& admin_;
  const Clock& clock_;
  std::vector<StoredJob> jobs_;
  std::vector<std::pair<ObjectRef, std::string>> undestroyed_;
};

boost::json::object job_to_json(const StoredJob& job);

}  // namespace custody::core
