#include "daemon/core/import/token_importer.h"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>

#include <spdlog/spdlog.h>

#include "common/hex.h"
#include "common/openssl_ptr.h"
#include "common/pem.h"
#include "daemon/core/keys/key_templates.h"
#include "daemon/core/keys/token_key_vault.h"
#include "pkcs11/token_quirks.h"

namespace custody::core {
namespace {

constexpr CK_BYTE kExponent[] = {0x01, 0x00, 0x01};

p11::Result<CK_OBJECT_HANDLE> find(p11::Session& s, CK_OBJECT_CLASS cls, const ObjectRef& ref) {
  p11::AttributeTemplate t;
  t.add_ulong(CKA_CLASS, cls).add_bytes(CKA_ID, ref.id);
  return s.find_one(t, ref.label);
}

Expected<std::string, std::string> rsa_pem(const Bytes& modulus, const Bytes& exponent) {
  const auto unreadable = [](const char* why) {
    return unexpected(std::string("the token's RSA public key is unreadable: ") + why);
  };
  ossl::ParamBuilder bld(OSSL_PARAM_BLD_new());
  ossl::BigNum n(BN_bin2bn(modulus.data(), static_cast<int>(modulus.size()), nullptr));
  ossl::BigNum e(BN_bin2bn(exponent.data(), static_cast<int>(exponent.size()), nullptr));
  if (!bld || !n || !e) return unreadable("OpenSSL cannot allocate");
  if (OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_N, n.get()) != 1 ||
      OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_E, e.get()) != 1)
    return unreadable("OpenSSL cannot take its modulus and exponent");
  ossl::Params params(OSSL_PARAM_BLD_to_param(bld.get()));
  ossl::PKeyCtx ctx(EVP_PKEY_CTX_new_from_name(nullptr, "RSA", nullptr));
  if (!params || !ctx) return unreadable("OpenSSL cannot allocate");
  EVP_PKEY* raw = nullptr;
  if (EVP_PKEY_fromdata_init(ctx.get()) != 1 || EVP_PKEY_fromdata(ctx.get(), &raw, EVP_PKEY_PUBLIC_KEY, params.get()) != 1)
    return unreadable("OpenSSL refuses its modulus and exponent");
  const ossl::PKey key(raw);
  auto pem = public_key_pem(key.get());
  if (!pem) return unreadable(pem.error().c_str());
  return std::move(*pem);
}

// E, the ephemeral key of the composed RSA-OAEP + AES-KWP unwrap: a session AES key that can only
// unwrap. A job key's CKA_UNWRAP_TEMPLATE pins exactly this, where the token supports it.
void fill_ephemeral_template(p11::AttributeTemplate& t) {
  t.add_ulong(CKA_CLASS, CKO_SECRET_KEY).add_ulong(CKA_KEY_TYPE, CKK_AES).add_bool(CKA_TOKEN, false);
  t.add_bool(CKA_PRIVATE, true).add_bool(CKA_SENSITIVE, true).add_bool(CKA_EXTRACTABLE, false);
  t.add_bool(CKA_UNWRAP, true).add_bool(CKA_WRAP, false).add_bool(CKA_ENCRYPT, false).add_bool(CKA_DECRYPT, false);
  t.add_bool(CKA_SIGN, false).add_bool(CKA_VERIFY, false).add_bool(CKA_DERIVE, false);
}

// The final object: the custody template of the algorithm. Some tokens refuse CKA_MODIFIABLE or
// CKA_COPYABLE in an unwrap template: make_custody_key tries without each in turn.
p11::Result<CK_OBJECT_HANDLE> unwrap_final(p11::Session& s, CK_MECHANISM& mech, CK_OBJECT_HANDLE with,
                                           std::span<const std::uint8_t> wrapped, Algorithm algorithm,
                                           const ObjectRef& target) {
  return make_custody_key(algorithm, target,
                          [&](p11::AttributeTemplate& t) { return s.unwrap_key(mech, with, wrapped, t); });
}

Error import_error(const p11::quirks::TokenQuirks& quirks, const p11::P11Error& e) {
  // An authenticated unwrap that refuses the bytes is reported like a bad GCM tag: the client's
  // payload is wrong. Only the unwrap itself can say that; any other call failing is the token's.
  if (e.fault == p11::Fault::token && e.function == "C_UnwrapKey" && p11::quirks::is_unwrap_integrity_failure(quirks, e.rv))
    return Error{Code::invalid_argument, "the wrapped key does not unwrap with this job's key (wrong key, method or bytes)"};
  return token_error(e, "key import");
}

}  // namespace

const std::vector<ImportMethod>& import_methods() {
  static const std::vector<ImportMethod> methods = {
      {"rsa-oaep-3072-sha256-aes-256", true, 3072, CKM_SHA256, CKG_MGF1_SHA256},
      {"rsa-oaep-4096-sha256-aes-256", true, 4096, CKM_SHA256, CKG_MGF1_SHA256},
      {"rsa-oaep-3072-sha1-aes-256", true, 3072, CKM_SHA_1, CKG_MGF1_SHA1},
      {"rsa-oaep-4096-sha1-aes-256", true, 4096, CKM_SHA_1, CKG_MGF1_SHA1},
      {"aes-kwp", false, 0, 0, 0},
  };
  return methods;
}

const ImportMethod* find_import_method(const std::string& name) {
  for (const auto& m : import_methods())
    if (m.name == name) return &m;
  return nullptr;
}

template <class T, class Fn>
Outcome<T> TokenImporter::with_session(Fn&& fn) {
  auto r = pool_.run<T>(std::forward<Fn>(fn));
  if (!r) return unexpected(import_error(pool_.quirks(), r.error()));
  return std::move(*r);
}

std::vector<std::string> TokenImporter::offered_methods() {
  std::lock_guard lock(probe_mutex_);
  if (offered_) return *offered_;
  std::vector<std::string> offered;
  auto lease = pool_.acquire();
  if (!lease) return {};
  auto& s = lease->session();
  CK_MECHANISM_INFO info{};
  auto has = [&](CK_MECHANISM_TYPE m, CK_FLAGS f) {
    return s.api()->C_GetMechanismInfo(pool_.slot(), m, &info) == CKR_OK && (info.flags & f) == f;
  };
  const bool kwp = has(CKM_AES_KEY_WRAP_PAD, CKF_UNWRAP);
  const bool oaep = has(CKM_RSA_PKCS_OAEP, CKF_UNWRAP) && has(CKM_RSA_PKCS_KEY_PAIR_GEN, CKF_GENERATE_KEY_PAIR);
  if (kwp && oaep) {
    // Which OAEP hashes the token takes cannot be listed: try each on a throwaway session key.
    p11::AttributeTemplate pub, priv;
    pub.add_ulong(CKA_MODULUS_BITS, 2048).add_bytes(CKA_PUBLIC_EXPONENT, kExponent).add_bool(CKA_TOKEN, false);
    pub.add_bool(CKA_ENCRYPT, true);
    priv.add_bool(CKA_TOKEN, false).add_bool(CKA_DECRYPT, true).add_bool(CKA_SENSITIVE, true);
    auto pair = s.generate_key_pair(CKM_RSA_PKCS_KEY_PAIR_GEN, pub, priv);
    if (pair) {
      for (const auto& m : import_methods()) {
        if (!m.rsa) continue;
        CK_RSA_PKCS_OAEP_PARAMS params{m.oaep_hash, m.oaep_mgf, CKZ_DATA_SPECIFIED, nullptr, 0};
        CK_MECHANISM mech{CKM_RSA_PKCS_OAEP, &params, sizeof params};
        const std::uint8_t probe[32] = {};
        if (s.encrypt(mech, pair->first, probe, 256)) offered.push_back(m.name);
      }
      (void)s.destroy_object(pair->first);
      (void)s.destroy_object(pair->second);
    }
  }
  if (kwp) offered.push_back("aes-kwp");
  offered_ = offered;
  return offered;
}

Outcome<std::string> TokenImporter::make_wrapping_pair(const ImportMethod& method, const ObjectRef& ref) {
  return with_session<std::string>([&](p11::Session& s) -> p11::Result<std::string> {
    p11::AttributeTemplate ephemeral;
    fill_ephemeral_template(ephemeral);
    auto generate = [&](bool pin_unwrap_template, bool not_copyable) {
      p11::AttributeTemplate pub, priv;
      pub.add_ulong(CKA_CLASS, CKO_PUBLIC_KEY).add_ulong(CKA_KEY_TYPE, CKK_RSA).add_ulong(CKA_MODULUS_BITS, method.rsa_bits);
      pub.add_bytes(CKA_PUBLIC_EXPONENT, kExponent).add_bytes(CKA_ID, ref.id).add_string(CKA_LABEL, ref.label);
      pub.add_bool(CKA_TOKEN, true).add_bool(CKA_WRAP, true).add_bool(CKA_ENCRYPT, false).add_bool(CKA_VERIFY, false);
      priv.add_ulong(CKA_CLASS, CKO_PRIVATE_KEY).add_ulong(CKA_KEY_TYPE, CKK_RSA).add_bytes(CKA_ID, ref.id);
      priv.add_string(CKA_LABEL, ref.label).add_bool(CKA_TOKEN, true).add_bool(CKA_PRIVATE, true);
      priv.add_bool(CKA_SENSITIVE, true).add_bool(CKA_EXTRACTABLE, false).add_bool(CKA_UNWRAP, true);
      priv.add_bool(CKA_DECRYPT, false).add_bool(CKA_SIGN, false).add_bool(CKA_DERIVE, false);
      if (pin_unwrap_template) priv.add_template(CKA_UNWRAP_TEMPLATE, ephemeral);
      if (not_copyable) {
        pub.add_bool(CKA_COPYABLE, false);
        priv.add_bool(CKA_COPYABLE, false);
      }
      return s.generate_key_pair(CKM_RSA_PKCS_KEY_PAIR_GEN, pub, priv);
    };
    // A pair left by an earlier attempt of this call (the pool retries after a session error)
    // carries this job's fresh CKA_ID: it goes first, so the job never has two pairs.
    auto leftover = destroy_carriers(s, ref);
    if (!leftover) return unexpected(leftover.error());
    if (leftover->remaining > 0)
      return unexpected(leftover->failure.value_or(p11::own_fault(p11::Fault::bad_reply, "destroy an earlier job key pair (objects remain)")));
    // The answer does not say which attribute a token refused: drop each in turn.
    constexpr std::pair<bool, bool> kAttempts[] = {{true, true}, {true, false}, {false, true}, {false, false}};
    auto pair = generate(true, true);
    for (auto [pin_unwrap_template, not_copyable] : std::span(kAttempts).subspan(1)) {
      if (pair || !(p11::quirks::refuses_unwrap_template(pair.error().rv) ||
                    p11::quirks::refuses_optional_restriction(pair.error().rv)))
        break;
      pair = generate(pin_unwrap_template, not_copyable);
    }
    if (!pair) return unexpected(pair.error());
    // From here on a failure must not leave the pair behind: nobody would own it.
    auto abandon = [&](p11::P11Error why) -> p11::Result<std::string> {
      for (CK_OBJECT_HANDLE h : {pair->second, pair->first})
        if (auto st = s.destroy_object(h); !st)
          spdlog::error("import job key pair {}: cannot destroy a half after a failure: {}", ref.label, st.error().describe());
      return unexpected(std::move(why));
    };
    auto n = s.get_bytes(pair->first, CKA_MODULUS);
    if (!n) return abandon(n.error());
    auto e = s.get_bytes(pair->first, CKA_PUBLIC_EXPONENT);
    if (!e) return abandon(e.error());
    if (!*n || !*e) return abandon(p11::own_fault(p11::Fault::bad_reply, "read the job key's RSA public key (attribute missing)"));
    auto pem = rsa_pem(**n, **e);
    if (!pem) return abandon(p11::own_fault(p11::Fault::bad_reply, "encode the job key's RSA public key: " + pem.error()));
    return *pem;
  });
}

Outcome<void> TokenImporter::destroy_wrapping_pair(const ObjectRef& ref) {
  // Both halves and any copy: every object carrying the job's CKA_ID or label.
  auto r = with_session<Shredding>([&](p11::Session& s) { return destroy_carriers(s, ref); });
  if (!r) return unexpected(r.error());
  if (r->remaining > 0)
    return fail(Code::internal, "import job key pair " + ref.label + " is not destroyed: " + std::to_string(r->remaining) +
                                    " object(s) still carry its CKA_ID or label" +
                                    (r->failure ? " (" + r->failure->describe() + ")" : std::string()));
  return {};
}

Outcome<std::vector<ObjectRef>> TokenImporter::find_labelled_pairs(std::string_view prefix) {
  return with_session<std::vector<ObjectRef>>([&](p11::Session& s) -> p11::Result<std::vector<ObjectRef>> {
    std::vector<ObjectRef> all;
    for (CK_OBJECT_CLASS c : {CKO_PRIVATE_KEY, CKO_PUBLIC_KEY}) {
      auto found = find_labelled_objects(s, c, prefix);
      if (!found) return unexpected(found.error());
      all.insert(all.end(), found->begin(), found->end());
    }
    return all;
  });
}

Outcome<AttributeReport> TokenImporter::wrapping_key_attributes(const ObjectRef& ref) {
  return with_session<AttributeReport>([&](p11::Session& s) -> p11::Result<AttributeReport> {
    auto h = find(s, CKO_PRIVATE_KEY, ref);
    if (!h) return unexpected(h.error());
    std::vector<CK_ATTRIBUTE_TYPE> types;
    for (const auto& [name, type] : reported_attributes()) types.push_back(type);
    auto values = s.get_bools(*h, types);
    if (!values) return unexpected(values.error());
    AttributeReport report;
    for (const auto& [name, type] : reported_attributes()) report[name] = (*values)[type];
    return report;
  });
}

Outcome<void> TokenImporter::import_rsa(const ImportMethod& method, const ObjectRef& wrapping,
                                        std::span<const std::uint8_t> payload, Algorithm algorithm, const ObjectRef& target) {
  const std::size_t rsa_len = method.rsa_bits / 8;
  if (payload.size() != rsa_len + 40)
    return fail(Code::invalid_argument, "the wrapped key must be " + std::to_string(rsa_len + 40) + " bytes for " + method.name +
                                            " (RSA-OAEP block, then the 40-byte AES-KWP of a 32-byte key)");
  auto r = with_session<bool>([&](p11::Session& s) -> p11::Result<bool> {
    auto job_key = find(s, CKO_PRIVATE_KEY, wrapping);
    if (!job_key) return unexpected(job_key.error());
    CK_RSA_PKCS_OAEP_PARAMS oaep{method.oaep_hash, method.oaep_mgf, CKZ_DATA_SPECIFIED, nullptr, 0};
    CK_MECHANISM rsa{CKM_RSA_PKCS_OAEP, &oaep, sizeof oaep};
    // E: a session key that can only unwrap, gone as soon as K is in.
    p11::AttributeTemplate et;
    fill_ephemeral_template(et);
    auto e = s.unwrap_key(rsa, *job_key, payload.first(rsa_len), et);
    if (!e) return unexpected(e.error());
    CK_MECHANISM kwp{CKM_AES_KEY_WRAP_PAD, nullptr, 0};
    auto k = unwrap_final(s, kwp, *e, payload.subspan(rsa_len), algorithm, target);
    (void)s.destroy_object(*e);
    if (!k) return unexpected(k.error());
    return true;
  });
  if (!r) return unexpected(r.error());
  return {};
}

Outcome<void> TokenImporter::import_kwp(const ObjectRef& transport, std::span<const std::uint8_t> payload,
                                        Algorithm algorithm, const ObjectRef& target) {
  if (payload.size() != 40)
    return fail(Code::invalid_argument, "the wrapped key must be 40 bytes: AES-KWP (RFC 5649) of a 32-byte key");
  auto r = with_session<bool>([&](p11::Session& s) -> p11::Result<bool> {
    auto t = find(s, CKO_SECRET_KEY, transport);
    if (!t) return unexpected(t.error());
    CK_MECHANISM kwp{CKM_AES_KEY_WRAP_PAD, nullptr, 0};
    auto k = unwrap_final(s, kwp, *t, payload, algorithm, target);
    if (!k) return unexpected(k.error());
    return true;
  });
  if (!r) return unexpected(r.error());
  return {};
}

Outcome<std::optional<std::string>> TokenImporter::kcv(Algorithm algorithm, const ObjectRef& target) {
  if (algorithm == Algorithm::aes_256_kwp_transport) return std::optional<std::string>{};
  return with_session<std::optional<std::string>>([&](p11::Session& s) -> p11::Result<std::optional<std::string>> {
    auto k = find(s, CKO_SECRET_KEY, target);
    if (!k) return unexpected(k.error());
    const std::uint8_t zeros[16] = {};
    if (algorithm == Algorithm::hmac_sha256) {
      CK_MECHANISM mac{CKM_SHA256_HMAC, nullptr, 0};
      auto m = s.sign(mac, *k, zeros, 32);
      if (!m) return unexpected(m.error());
      return std::optional<std::string>{hex_upper(std::span(m->data(), 3))};
    }
    // One block of AES-ECB(K, 0^16) on the key itself: custody keys are not copyable, so there is
    // no session copy to compute it on (and its encrypt permission already allows it).
    CK_MECHANISM ecb{CKM_AES_ECB, nullptr, 0};
    auto block = s.encrypt(ecb, *k, zeros, 16);
    if (!block) return unexpected(block.error());
    return std::optional<std::string>{hex_upper(std::span(block->data(), 3))};
  });
}

Outcome<void> TokenImporter::destroy(const ObjectRef& target) {
  auto r = with_session<bool>([&](p11::Session& s) -> p11::Result<bool> {
    auto k = find(s, CKO_SECRET_KEY, target);
    if (k) {
      if (auto st = s.destroy_object(*k); !st) return unexpected(st.error());
    }
    return true;
  });
  if (!r) return unexpected(r.error());
  return {};
}

}  // namespace custody::core
