#pragma once
// Backup and disaster recovery without plaintext (CONTRACT §11). On the primary, export wraps
// every version of the recovery keys under the trusted recovery public key and signs the bundle
// with the attestation key. On the recovery (DR) daemon, import verifies the bundle against the
// primary's pinned attestation key and restores the keys through the recovery private key; the
// drill does the same into session objects only and changes nothing.
// Export and import run as dual-control admin operations; the drill is audited by its handler.
#include <boost/json/object.hpp>
#include <optional>
#include <string>
#include <vector>

#include "daemon/core/attestation/attestation_key.h"
#include "daemon/core/clock.h"
#include "daemon/core/keys/key_admin.h"
#include "daemon/core/keys/key_registry.h"
#include "daemon/core/recovery/recovery_bundle.h"
#include "daemon/core/recovery/recovery_token.h"
#include "daemon/core/state/state_store.h"

namespace custody::core {

struct RecoveryIdentity {
  std::string daemon_version;
  std::string instance_id;
};

// What export-recovery-bundle and import-recovery-bundle take, checked.
struct ExportRequest {
  std::string recovery_key_id;
  std::vector<std::string> keys;  // empty: every recovery key
};
struct ImportRequest {
  BundleEnvelope envelope;
  std::string attestation_public_key;  // the primary's, pinned by the operators
  RecoveryBundle bundle;               // verified
};

class Recovery {
 public:
  Recovery(RecoveryToken& token, KeyRegistry& registry, KeyAdmin& admin, KeyVault& vault, StateStoreApi& store,
           const AttestationKey& signer, const Clock& clock, RecoveryIdentity identity)
      : token_(token), registry_(registry), admin_(admin), vault_(vault), store_(store), signer_(signer), clock_(clock),
        identity_(std::move(identity)) {}

  // Params of export-recovery-bundle: recovery_key_id, keys (optional list of names). Checks
  // that each named key exists and is a recovery key, and that some key is to be exported.
  Outcome<ExportRequest> check_export(const boost::json::object& params);
  // Runs the export for admin request request_id: result {recovery_bundle: {id, created_at,
  // recovery_key_id, mechanism, keys}}; the envelope is stored and served by bundle(id).
  Outcome<boost::json::object> export_bundle(const ExportRequest& request, const std::string& request_id);
  // The stored envelope; not_found when there is none.
  Outcome<boost::json::object> bundle(const std::string& id);
  // The summary of the bundle an applied export request made (after a crash).
  boost::json::object export_result(const std::string& request_id);

  // Params of import-recovery-bundle (and of a drill): bundle (the envelope object),
  // attestation_public_key (PEM). The signature is verified here.
  Outcome<ImportRequest> check_import(const boost::json::object& params);
  // Restores each key: result {keys: [{name, result: restored | already-present | refused, message?}]}.
  // Refuses the whole import, before anything is restored, when a key exists with other material.
  Outcome<boost::json::object> import_bundle(const ImportRequest& request);
  // Unwraps every live version into a session object, checks its sample, destroys it:
  // {bundle_id, passed, keys: [{name, passed, versions: [{version, passed, message?}]}]}.
  Outcome<boost::json::object> drill(const ImportRequest& request);

  // A consistent copy of the state database (SQLite online backup) taken while serving: the
  // bytes of the file, for custodyctl admin backup-state.
  Outcome<Bytes> state_snapshot();

  RecoveryToken& token() { return token_; }

 private:
  // ok when the existing key holds the bundle key's material (every live version's sample
  // matches); failed_precondition when it does not.
  Outcome<void> same_material(const Key& existing, const BundleKey& key);

  RecoveryToken& token_;
  KeyRegistry& registry_;
  KeyAdmin& admin_;
  KeyVault& vault_;
  StateStoreApi& store_;
  const AttestationKey& signer_;
  const Clock& clock_;
  RecoveryIdentity identity_;
};

}  // namespace custody::core
