#pragma once
// The daemon's signing key: an EC P-256 key pair generated in the token at first start (private
// half sensitive, never extractable, sign only) and found again by label on later starts. It
// signs attestation reports and audit checkpoints: ECDSA over SHA-256, as DER, so plain OpenSSL
// verifies it (`openssl dgst -sha256 -verify`). One host uses the label `custody:attestation`;
// each daemon of a fleet has its own pair, labelled `custody:attestation:<host id>`.
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "daemon/core/error.h"
#include "pkcs11/session_pool.h"

namespace custody::core {

inline constexpr const char* kAttestationKeyLabel = "custody:attestation";
// Followed by a fleet member's host id (daemon/core/attestation/host_identity.h).
inline constexpr std::string_view kFleetAttestationLabelPrefix = "custody:attestation:";

// What a verifier needs of an attestation public key: its PEM and its key id.
struct AttestationPublicKey {
  std::string pem;
  std::string key_id;  // hex SHA-256 of the SPKI DER
};
// From the public half's CKA_EC_POINT (a P-256 point, with or without its DER OCTET STRING).
Expected<AttestationPublicKey, std::string> attestation_public_key(const Bytes& ec_point);

class AttestationKey {
 public:
  // Finds or makes the key pair labelled label; created is set when it was made now. Processes
  // racing to make the same label converge: each pair found carries a CKA_ID, the lowest wins, and
  // a process destroys the pair it just made when it lost (never one another process made).
  static Expected<AttestationKey, std::string> open(p11::SessionPool& pool, const std::string& label, bool& created);
  static Expected<AttestationKey, std::string> open(p11::SessionPool& pool, bool& created) {
    return open(pool, kAttestationKeyLabel, created);
  }

  Outcome<Bytes> sign(std::string_view message) const;  // DER ECDSA-P256-SHA256
  const std::string& public_key_pem() const { return pem_; }
  const std::string& key_id() const { return key_id_; }  // hex SHA-256 of the SPKI DER
  const std::string& label() const { return label_; }

 private:
  // One search (and generation, when no pair is found). made: the CKA_ID of the pair this process
  // generated, from an earlier attempt or this one. raced: the failure looks like a shared-store
  // race (a generation refused, or a pair just made not seen).
  static Expected<AttestationKey, std::string> open_once(p11::SessionPool& pool, const std::string& label, Bytes& made,
                                                         bool& created, bool& raced);
  // The checks of the pair found or made, and the key object that signs with it.
  static Expected<AttestationKey, std::string> adopt(p11::Session& s, p11::SessionPool& pool, const std::string& label,
                                                     const Bytes& id, CK_OBJECT_HANDLE pub, CK_OBJECT_HANDLE priv);

  p11::SessionPool* pool_ = nullptr;
  Bytes id_;  // CKA_ID of the pair
  std::string label_;
  std::string pem_;
  std::string key_id_;
};

// The fleet's attestation keys as the shared token holds them: every public key labelled
// `custody:attestation:<host id>`, one per daemon that has started against the token. A fleet
// member's attestation report lists them, so an auditor who pinned one report's key learns (signed)
// the key of every other host and checks each host's audit log with that host's own key.
struct FleetInstance {
  std::string instance;  // the host id from the label
  std::string key_id;    // hex SHA-256 of the SPKI DER
  std::string public_key_pem;
};

// Sorted by instance. PKCS#11 has no prefix search: every public key's label is read and filtered.
// Where a race left two pairs for one host, the one with the lowest CKA_ID is listed: the one
// AttestationKey::open keeps. own_host_id is the calling member's: its pair is always in the token,
// so a listing without it comes from a view that lost objects and is read again on a fresh one.
Outcome<std::vector<FleetInstance>> list_fleet_instances(p11::SessionPool& pool, std::string_view own_host_id);

}  // namespace custody::core
