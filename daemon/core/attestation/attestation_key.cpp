#include "daemon/core/attestation/attestation_key.h"

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <map>
#include <optional>
#include <thread>

#include "common/ecdsa_der.h"
#include "common/hex.h"
#include "common/openssl_ptr.h"
#include "common/pem.h"
#include "common/random.h"
#include "daemon/core/keys/token_key_vault.h"
#include "pkcs11/token_quirks.h"

namespace custody::core {
namespace {

// DER of the named curve OID prime256v1 (1.2.840.10045.3.1.7), as CKA_EC_PARAMS wants it.
constexpr std::uint8_t kP256Params[] = {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};

// The objects carrying one label, by CKA_ID: a pair is complete when both halves are there.
struct LabelledPair {
  std::optional<CK_OBJECT_HANDLE> pub, priv;
};
using LabelledPairs = std::map<Bytes, LabelledPair>;  // ordered by CKA_ID, bytewise

Expected<LabelledPairs, std::string> find_pairs(p11::Session& s, const std::string& label) {
  LabelledPairs pairs;
  for (CK_OBJECT_CLASS cls : {CKO_PUBLIC_KEY, CKO_PRIVATE_KEY}) {
    p11::AttributeTemplate t;
    t.add_ulong(CKA_CLASS, cls).add_string(CKA_LABEL, label);
    auto found = s.find_all(t);
    if (!found) return unexpected("cannot look for the attestation key: " + found.error().describe());
    for (CK_OBJECT_HANDLE h : *found) {
      auto id = s.get_bytes(h, CKA_ID);
      // A racing process destroyed the pair it lost with between our search and this read.
      if (!id && id.error().fault == p11::Fault::token && id.error().rv == CKR_OBJECT_HANDLE_INVALID) continue;
      if (!id) return unexpected("cannot read the attestation key's CKA_ID: " + id.error().describe());
      auto& half = cls == CKO_PUBLIC_KEY ? pairs[id->value_or(Bytes{})].pub : pairs[id->value_or(Bytes{})].priv;
      // Two objects with one label and one CKA_ID are a copy, not a race: never pick one of them.
      if (half) return unexpected("cannot look for the attestation key: more than one object labelled " + label +
                                  " has the same CKA_ID (a copy); remove the copy");
      half = h;
    }
  }
  return pairs;
}

// The pair every process picks: the complete one with the lowest CKA_ID.
std::optional<std::pair<Bytes, LabelledPair>> lowest_complete(const LabelledPairs& pairs) {
  for (const auto& [id, pair] : pairs)
    if (pair.pub && pair.priv) return std::pair{id, pair};
  return std::nullopt;
}

// CKA_EC_POINT is a DER OCTET STRING around the uncompressed point (some tokens omit the wrapper).
Expected<Bytes, std::string> spki_from_ec_point(const Bytes& ec_point) {
  Bytes point = ec_point;
  if (point.size() > 2 && point[0] == 0x04 && point[1] == point.size() - 2) point.erase(point.begin(), point.begin() + 2);
  ossl::ParamBuilder bld(OSSL_PARAM_BLD_new());
  if (!bld || OSSL_PARAM_BLD_push_utf8_string(bld.get(), OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0) != 1 ||
      OSSL_PARAM_BLD_push_octet_string(bld.get(), OSSL_PKEY_PARAM_PUB_KEY, point.data(), point.size()) != 1)
    return unexpected(std::string("OpenSSL cannot build the attestation public key's parameters"));
  ossl::Params params(OSSL_PARAM_BLD_to_param(bld.get()));
  ossl::PKeyCtx ctx(EVP_PKEY_CTX_new_from_name(nullptr, "EC", nullptr));
  if (!params || !ctx) return unexpected(std::string("OpenSSL cannot allocate the attestation public key"));
  EVP_PKEY* made = nullptr;
  const bool ok = EVP_PKEY_fromdata_init(ctx.get()) == 1 &&
                  EVP_PKEY_fromdata(ctx.get(), &made, EVP_PKEY_PUBLIC_KEY, params.get()) == 1;
  ossl::PKey key(made);
  if (!ok || !key) return unexpected(std::string("the token's attestation public key is not a P-256 point"));
  const ossl::Der der = ossl::encode_der(key.get(), i2d_PUBKEY);
  if (!der) return unexpected(std::string("OpenSSL cannot encode the attestation public key"));
  return Bytes(der.bytes().begin(), der.bytes().end());
}

Expected<std::string, std::string> pem_of(const Bytes& spki) {
  const unsigned char* p = spki.data();
  ossl::PKey key(d2i_PUBKEY(nullptr, &p, static_cast<long>(spki.size())));
  if (!key) return unexpected(std::string("OpenSSL cannot read back the attestation public key"));
  return public_key_pem(key.get());
}

}  // namespace

Expected<AttestationKey, std::string> AttestationKey::open(p11::SessionPool& pool, const std::string& label,
                                                           bool& created) {
  // Processes starting together on one token can meet another's write
  // (p11::quirks::may_be_a_shared_store_race): the whole search starts again on a fresh module,
  // since another process may have made a pair meanwhile. made carries the pair an earlier
  // attempt generated, so it is kept or removed like one made in this attempt, never left unused.
  Bytes made;
  return pool.retry_on_fresh_module(
      [&](bool& raced) { return open_once(pool, label, made, created, raced); },
      [](const Expected<AttestationKey, std::string>& failed) {
        spdlog::warn("attestation key: {}; trying again (another process may be writing the token)", failed.error());
      });
}

Expected<AttestationKey, std::string> AttestationKey::open_once(p11::SessionPool& pool, const std::string& label,
                                                                Bytes& made, bool& created, bool& raced) {
  auto lease = pool.acquire();
  if (!lease) return unexpected("token: " + lease.error().describe());
  auto& s = lease->session();
  created = false;
  auto pairs = find_pairs(s, label);
  if (!pairs) return unexpected(pairs.error());
  // Half of the pair an earlier attempt made (the store lost the other half): it is this
  // process's own, so it goes, and a pair is made again.
  if (auto earlier = pairs->find(made); !made.empty() && earlier != pairs->end() &&
                                        !(earlier->second.pub && earlier->second.priv)) {
    for (auto half : {earlier->second.pub, earlier->second.priv})
      if (half)
        if (auto gone = s.destroy_object(*half); !gone)
          return unexpected("cannot remove the half attestation key pair made before (label " + label +
                            "): " + gone.error().describe());
    pairs->erase(earlier);
    made.clear();
  }
  // Another process may be between the two halves of its C_GenerateKeyPair: a half alone is
  // reported only when it stays alone.
  for (int look = 0; !lowest_complete(*pairs) && !pairs->empty() && look < 10; ++look) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    pairs = find_pairs(s, label);
    if (!pairs) return unexpected(pairs.error());
  }
  auto chosen = lowest_complete(*pairs);
  // The pair an earlier attempt made, when it is in the token whole: judged as made here.
  std::optional<std::pair<CK_OBJECT_HANDLE, CK_OBJECT_HANDLE>> mine;
  if (auto earlier = pairs->find(made); !made.empty() && earlier != pairs->end() && earlier->second.pub &&
                                        earlier->second.priv)
    mine.emplace(*earlier->second.pub, *earlier->second.priv);
  if (!chosen && !pairs->empty())
    return unexpected("the token holds half of the attestation key pair; remove it or restore the other half (label " +
                      label + ")");
  Bytes id = made;
  if (!chosen) {
    id.assign(16, 0);
    if (auto random = fill_random(id); !random)
      return unexpected("no CKA_ID for the attestation key: " + random.error());
    auto generate = [&](bool not_copyable) {
      p11::AttributeTemplate pt, kt;
      pt.add_ulong(CKA_CLASS, CKO_PUBLIC_KEY).add_ulong(CKA_KEY_TYPE, CKK_EC).add_bytes(CKA_EC_PARAMS, kP256Params);
      pt.add_bytes(CKA_ID, id).add_string(CKA_LABEL, label).add_bool(CKA_TOKEN, true);
      pt.add_bool(CKA_VERIFY, true).add_bool(CKA_ENCRYPT, false).add_bool(CKA_WRAP, false).add_bool(CKA_DERIVE, false);
      kt.add_ulong(CKA_CLASS, CKO_PRIVATE_KEY).add_ulong(CKA_KEY_TYPE, CKK_EC).add_bytes(CKA_ID, id);
      kt.add_string(CKA_LABEL, label).add_bool(CKA_TOKEN, true).add_bool(CKA_PRIVATE, true);
      kt.add_bool(CKA_SENSITIVE, true).add_bool(CKA_EXTRACTABLE, false).add_bool(CKA_SIGN, true);
      kt.add_bool(CKA_DECRYPT, false).add_bool(CKA_UNWRAP, false).add_bool(CKA_DERIVE, false);
      if (not_copyable) {
        pt.add_bool(CKA_COPYABLE, false);
        kt.add_bool(CKA_COPYABLE, false);
      }
      return s.generate_key_pair(CKM_EC_KEY_PAIR_GEN, pt, kt);
    };
    auto pair = generate(true);
    if (!pair && p11::quirks::refuses_optional_restriction(pair.error().rv)) pair = generate(false);
    if (!pair) {
      raced = p11::quirks::may_be_a_shared_store_race(pair.error().rv);
      return unexpected("cannot generate the attestation key: " + pair.error().describe());
    }
    made = id;
    mine.emplace(pair->first, pair->second);
  }
  if (mine) {
    created = true;
    // Processes starting together on a fresh token each found nothing and each made a pair. All
    // of them keep the lowest CKA_ID they see now; a loser removes its own pair, and only that.
    // A token shared by processes may list the objects again from its store while another
    // process writes it (SoftHSMv2's file store does): the pair made here shows up again shortly.
    auto after = find_pairs(s, label);
    for (int look = 0; after && !after->contains(id) && look < 10; ++look) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      after = find_pairs(s, label);
    }
    if (!after) return unexpected(after.error());
    // A process whose view of a shared store went stale does not see what it made (SoftHSMv2).
    raced = !after->contains(id) || !lowest_complete(*after);
    if (raced) return unexpected("the attestation key just generated (label " + label + ") is not in the token");
    chosen = lowest_complete(*after);
    if (chosen->first != id) {
      created = false;
      for (CK_OBJECT_HANDLE half : {mine->first, mine->second})
        if (auto gone = s.destroy_object(half); !gone)
          return unexpected("another process made the attestation key (label " + label +
                            ") at the same moment, and the duplicate made here cannot be removed: " +
                            gone.error().describe() + "; start custodyd again");
    }
  }
  // A pair another process is still generating can be seen before all its attributes are set:
  // it gets a moment before it is called wrong. The pair made here is judged at once.
  const Bytes made_here = created ? chosen->first : Bytes{};
  for (int look = 0;; ++look) {
    auto key = adopt(s, pool, label, chosen->first, *chosen->second.pub, *chosen->second.priv);
    if (key || chosen->first == made_here || look == 10) return key;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    auto again = find_pairs(s, label);
    if (!again) return unexpected(again.error());
    chosen = lowest_complete(*again);
    if (!chosen) return unexpected("the attestation key (label " + label + ") disappeared from the token while it was read");
  }
}

Expected<AttestationKey, std::string> AttestationKey::adopt(p11::Session& s, p11::SessionPool& pool, const std::string& label,
                                                            const Bytes& id, CK_OBJECT_HANDLE pub, CK_OBJECT_HANDLE priv) {
  // Sign only, sensitive, never extractable, uncopyable (where the token reports CKA_COPYABLE, see
  // p11::quirks::refuses_optional_restriction): refuse to use a key that is anything else.
  const CK_ATTRIBUTE_TYPE checks[] = {CKA_SIGN,   CKA_SENSITIVE, CKA_EXTRACTABLE, CKA_DECRYPT,
                                      CKA_UNWRAP, CKA_DERIVE,    CKA_COPYABLE};
  auto attrs = s.get_bools(priv, checks);
  if (!attrs) return unexpected("cannot read the attestation key: " + attrs.error().describe());
  auto is = [&](CK_ATTRIBUTE_TYPE t, bool want) { return (*attrs)[t].has_value() && *(*attrs)[t] == want; };
  if (!is(CKA_SIGN, true) || !is(CKA_SENSITIVE, true) || !is(CKA_EXTRACTABLE, false) || is(CKA_DECRYPT, true) ||
      is(CKA_UNWRAP, true) || is(CKA_DERIVE, true) || is(CKA_COPYABLE, true))
    return unexpected(std::string(
        "the token's attestation key is not a sensitive, non-extractable, uncopyable, sign-only key"));
  auto point = s.get_bytes(pub, CKA_EC_POINT);
  if (!point) return unexpected("cannot read the attestation public key: " + point.error().describe());
  if (!*point || id.empty())
    return unexpected(std::string("the token's attestation key has no CKA_EC_POINT or no CKA_ID"));
  auto public_key = attestation_public_key(**point);
  if (!public_key) return unexpected(public_key.error());
  AttestationKey k;
  k.pool_ = &pool;
  k.id_ = id;
  k.label_ = label;
  k.pem_ = std::move(public_key->pem);
  k.key_id_ = std::move(public_key->key_id);
  return k;
}

Expected<AttestationPublicKey, std::string> attestation_public_key(const Bytes& ec_point) {
  auto spki = spki_from_ec_point(ec_point);
  if (!spki) return unexpected(spki.error());
  auto pem = pem_of(*spki);
  if (!pem) return unexpected(pem.error());
  auto key_id = sha256_hex(*spki);
  if (!key_id) return unexpected("cannot compute the attestation key id: " + key_id.error());
  return AttestationPublicKey{std::move(*pem), std::move(*key_id)};
}

Outcome<Bytes> AttestationKey::sign(std::string_view message) const {
  auto hashed = sha256(std::span(reinterpret_cast<const std::uint8_t*>(message.data()), message.size()));
  if (!hashed) return fail(Code::unavailable, "cannot make an attestation signature: " + hashed.error());
  const Bytes& digest = *hashed;
  auto raw = pool_->run<SecureBytes>([&](p11::Session& s) -> p11::Result<SecureBytes> {
    p11::AttributeTemplate t;
    t.add_ulong(CKA_CLASS, CKO_PRIVATE_KEY).add_bytes(CKA_ID, id_);
    auto key = s.find_one(t, label_);
    if (!key) return unexpected(key.error());
    // The token signs the digest (CKM_ECDSA): tokens without CKM_ECDSA_SHA256 do this too.
    CK_MECHANISM mech{CKM_ECDSA, nullptr, 0};
    return s.sign(mech, *key, digest, 64);
  });
  if (raw) {
    auto der = ecdsa_signature_der(*raw);
    if (!der) return fail(Code::internal, "the token's attestation signature: " + der.error());
    return std::move(*der);
  }
  if (raw.error().fault == p11::Fault::not_found) return fail(Code::internal, "the attestation key is missing from the token");
  return unexpected(token_error(raw.error(), "attestation signature"));
}

namespace {

struct Candidate {
  Bytes id;
  Bytes ec_point;
};

// Another daemon removed the pair it lost a race with between the search and this read.
bool vanished(const p11::P11Error& e) { return e.fault == p11::Fault::token && e.rv == CKR_OBJECT_HANDLE_INVALID; }

}  // namespace

Outcome<std::vector<FleetInstance>> list_fleet_instances(p11::SessionPool& pool, std::string_view own_host_id) {
  // A module whose view of a shared store can go stale (SoftHSMv2) may not show the pairs other
  // members made while it wrote its own: the list is read from a fresh view.
  pool.refresh_stale_view();
  auto found = pool.run<std::map<std::string, Candidate>>(
      [own_host_id](p11::Session& s) -> p11::Result<std::map<std::string, Candidate>> {
        p11::AttributeTemplate t;
        t.add_ulong(CKA_CLASS, CKO_PUBLIC_KEY);
        auto handles = s.find_all(t);
        if (!handles) return unexpected(handles.error());
        std::map<std::string, Candidate> by_instance;
        for (CK_OBJECT_HANDLE h : *handles) {
          auto label = s.get_bytes(h, CKA_LABEL);
          if (!label && vanished(label.error())) continue;
          if (!label) return unexpected(label.error());
          if (!*label) continue;
          const std::string text((*label)->begin(), (*label)->end());
          if (!text.starts_with(kFleetAttestationLabelPrefix) || text.size() == kFleetAttestationLabelPrefix.size())
            continue;
          auto id = s.get_bytes(h, CKA_ID);
          auto point = s.get_bytes(h, CKA_EC_POINT);
          if ((!id && vanished(id.error())) || (!point && vanished(point.error()))) continue;
          if (!id) return unexpected(id.error());
          if (!point) return unexpected(point.error());
          if (!*point) continue;  // not an EC key: not one custody made
          const std::string instance = text.substr(kFleetAttestationLabelPrefix.size());
          Candidate c{id->value_or(Bytes{}), **point};
          auto it = by_instance.find(instance);
          if (it == by_instance.end()) by_instance.emplace(instance, std::move(c));
          else if (c.id < it->second.id) it->second = std::move(c);
        }
        // Not found: SessionPool::run looks once more on a fresh module.
        if (!by_instance.contains(std::string(own_host_id)))
          return unexpected(p11::own_fault(p11::Fault::not_found, "this daemon's own attestation key is not in the listing"));
        return by_instance;
      });
  if (!found && found.error().fault == p11::Fault::not_found)
    return fail(Code::internal, "this daemon's own attestation key is missing from the token's list of the fleet's keys");
  if (!found) return unexpected(token_error(found.error(), "listing the fleet's attestation keys"));
  std::vector<FleetInstance> out;
  for (auto& [instance, c] : *found) {
    auto key = attestation_public_key(c.ec_point);
    // A key another daemon's report would fail on too: say which host's key it is.
    if (!key) return fail(Code::internal, "the attestation key of fleet instance " + instance + ": " + key.error());
    out.push_back({instance, std::move(key->key_id), std::move(key->pem)});
  }
  return out;
}

}  // namespace custody::core
