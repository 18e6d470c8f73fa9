#pragma once
// What must hold of a daemon restarted after a kill -9: every acknowledged change is there, every
// acknowledged request has its audit record, the chain verifies, state and token reconcile.
// Each check returns the problems it found, one line each; empty when all holds.
#include <map>
#include <set>
#include <string>
#include <vector>

#include "tests/crash/audit_index.h"
#include "tests/crash/ledger.h"
#include "tests/support/daemon_process.h"

namespace custody::crash {

using Problems = std::vector<std::string>;

// Each ciphertext unwraps (batch unwrap, the same context) to its plaintext.
Problems check_ciphertexts(test::Daemon& d, const std::vector<AckedCiphertext>& acked);
// Each acknowledged request has its records, result ok.
Problems check_audit_records(const AuditIndex& audit, const std::vector<AckedRecord>& acked);
// Acknowledged proposals, approvals and executions are in the state with their effect (a rotated
// key's version); every approval and execution the state holds has its audit record.
Problems check_admin_requests(test::Daemon& d, const AuditIndex& audit, const std::map<std::string, AckedAdminRequest>& acked);
// Acknowledged import jobs exist; acknowledged imports are key versions holding the bytes sent.
Problems check_imports(test::Daemon& d, const std::set<std::string>& jobs, const std::vector<AckedImport>& imports);
// Health "ok"; POST /v1/admin/keys/check finds nothing missing, altered or stray.
Problems check_reconciled(test::Daemon& d);
// Every import job key pair in the token (label "custody-import:<job id>") belongs to a job the
// daemon lists as active: a crash leaves none behind that nothing reports (keys check does not
// look at them).
Problems check_import_job_objects(test::Daemon& d);
// custodyctl audit verify over every file of the log, checkpoints checked with the attestation key.
Problems check_audit_chain(const std::string& audit_path, const std::string& attestation_pem, const std::string& work_dir);

}  // namespace custody::crash
