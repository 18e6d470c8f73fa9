#include "daemon/core/keys/token_key_vault.h"

#include <algorithm>

#include <spdlog/spdlog.h>

#include "daemon/core/keys/key_templates.h"
#include "pkcs11/token_quirks.h"

namespace custody::core {
namespace {

std::string id_key(const ObjectRef& ref) { return std::string(ref.id.begin(), ref.id.end()); }

bool stale_handle(CK_RV rv) { return rv == CKR_OBJECT_HANDLE_INVALID || rv == CKR_KEY_HANDLE_INVALID; }


}  // namespace

Error token_error(const p11::P11Error& e, const char* what) {
  spdlog::warn("token call failed during {}: {}", what, e.describe());
  switch (e.fault) {
    case p11::Fault::pool_timeout:
      // Saturated, not broken: the client may retry (the transport adds Retry-After to a 503).
      return Error{Code::unavailable, std::string("every token session is busy (") + what + "); retry later"};
    case p11::Fault::pool_resetting:
      return Error{Code::unavailable, std::string("the token is unavailable (") + what + ")"};
    case p11::Fault::not_found:
      return Error{Code::internal, std::string("the token object of the key is missing (") + what + ")"};
    case p11::Fault::not_unique:
      // Two objects answer for one key: a copy. Using either could be using the wrong one.
      return Error{Code::internal, std::string("more than one token object carries the key's CKA_ID (") + what + ")"};
    case p11::Fault::bad_reply:
      return Error{Code::internal, std::string("the token's answer is unusable (") + what + ")"};
    case p11::Fault::token:
      break;
  }
  if (e.severity() != p11::Severity::operation)
    return Error{Code::unavailable, std::string("the token is unavailable (") + what + ")"};
  return Error{Code::internal, std::string("the token refused the operation (") + what + ")"};
}

TokenKeyVault::TokenKeyVault(p11::SessionPool& pool) : pool_(pool) {}

template <class T, class Fn>
p11::Result<T> TokenKeyVault::with_session(Fn&& fn) {
  return pool_.run<T>([&](p11::Session& s) -> p11::Result<T> {
    operations_.fetch_add(1, std::memory_order_relaxed);
    auto result = fn(s);
    if (!result && result.error().severity() != p11::Severity::operation) {
      // Handles may not outlive the session or login that went: look objects up afresh.
      std::lock_guard lock(cache_mutex_);
      handles_.clear();
    }
    return result;
  });
}

p11::Result<CK_OBJECT_HANDLE> TokenKeyVault::resolve(p11::Session& s, const ObjectRef& ref) {
  const auto generation = pool_.generation();
  const auto key = id_key(ref);
  {
    std::lock_guard lock(cache_mutex_);
    if (cache_generation_ != generation) {
      handles_.clear();
      cache_generation_ = generation;
    }
    if (auto it = handles_.find(key); it != handles_.end()) return it->second;
  }
  p11::AttributeTemplate t;
  t.add_ulong(CKA_CLASS, CKO_SECRET_KEY).add_bytes(CKA_ID, ref.id);
  auto found = s.find_one(t, ref.label);
  if (!found) return unexpected(found.error());
  std::lock_guard lock(cache_mutex_);
  if (cache_generation_ == generation) handles_[key] = *found;
  return *found;
}

void TokenKeyVault::forget(const ObjectRef& ref) {
  std::lock_guard lock(cache_mutex_);
  handles_.erase(id_key(ref));
}

Outcome<void> TokenKeyVault::generate(Algorithm algorithm, const ObjectRef& ref, bool recovery) {
  auto made = with_session<CK_OBJECT_HANDLE>([&](p11::Session& s) -> p11::Result<CK_OBJECT_HANDLE> {
    return make_custody_key(algorithm, ref, recovery, [&](p11::AttributeTemplate& t) {
      t.add_ulong(CKA_VALUE_LEN, 32);
      return s.generate_key(generation_mechanism(algorithm), t);
    });
  });
  if (!made) return unexpected(token_error(made.error(), "key generation"));
  if (auto ok = verify(algorithm, ref, true, recovery); !ok) {
    spdlog::error("generated key {} does not have the custody template ({}); destroying it", ref.label,
                  ok.error().message);
    (void)with_session<bool>([&](p11::Session& s) -> p11::Result<bool> {
      if (auto st = s.destroy_object(*made); !st) return unexpected(st.error());
      return true;
    });
    forget(ref);
    return ok;
  }
  return {};
}

p11::Result<SecureBytes> TokenKeyVault::gcm(const ObjectRef& key, std::span<const std::uint8_t> iv,
                                           std::span<const std::uint8_t> aad, std::span<const std::uint8_t> input,
                                           bool encrypt) {
  return with_session<SecureBytes>([&](p11::Session& s) -> p11::Result<SecureBytes> {
    auto h = resolve(s, key);
    if (!h) return unexpected(h.error());
    CK_GCM_PARAMS params{const_cast<CK_BYTE*>(iv.data()), iv.size(), iv.size() * 8,
                         const_cast<CK_BYTE*>(aad.data()), aad.size(), 128};
    CK_MECHANISM mech{CKM_AES_GCM, &params, sizeof params};
    auto out = encrypt ? s.encrypt(mech, *h, input, input.size() + 16) : s.decrypt(mech, *h, input, input.size());
    if (!out && stale_handle(out.error().rv)) forget(key);
    return out;
  });
}

Outcome<SecureBytes> TokenKeyVault::gcm_encrypt(const ObjectRef& key, std::span<const std::uint8_t> iv,
                                                std::span<const std::uint8_t> aad,
                                                std::span<const std::uint8_t> plaintext) {
  // The token gets a copy: one that writes its own IV into pIv (quirks: gcm_iv_from_token) must
  // not change the caller's, which its format has already bound (the CONTRACT §4 blob's AAD).
  Bytes given(iv.begin(), iv.end());
  auto r = gcm(key, given, aad, plaintext, true);
  if (!r) return unexpected(token_error(r.error(), "encrypt"));
  // Sealed under another IV than the one the caller will store: a ciphertext nobody could open.
  if (!std::equal(given.begin(), given.end(), iv.begin(), iv.end()))
    return fail(Code::internal, "the token replaced the AES-GCM IV custody gave it (it makes its own IVs), so this "
                                "format cannot be made on it; nothing was returned");
  return std::move(*r);
}

Outcome<SecureBytes> TokenKeyVault::gcm_decrypt(const ObjectRef& key, std::span<const std::uint8_t> iv,
                                                std::span<const std::uint8_t> aad,
                                                std::span<const std::uint8_t> ciphertext_and_tag) {
  auto r = gcm(key, iv, aad, ciphertext_and_tag, false);
  if (!r) {
    if (r.error().fault == p11::Fault::token && p11::quirks::is_authentication_failure(pool_.quirks(), r.error().rv))
      return fail(Code::invalid_ciphertext, "the ciphertext does not authenticate (tampered, or another context)");
    return unexpected(token_error(r.error(), "decrypt"));
  }
  return std::move(*r);
}

Outcome<TokenKeyVault::FreshIvSealed> TokenKeyVault::gcm_encrypt_fresh_iv(const ObjectRef& key,
                                                                          std::span<const std::uint8_t> aad,
                                                                          std::span<const std::uint8_t> plaintext) {
  constexpr std::size_t kIvBytes = 12;
  const bool known_to_make_iv = token_makes_gcm_iv_.load(std::memory_order_relaxed) || pool_.quirks().gcm_iv_from_token;
  auto r = with_session<FreshIvSealed>([&](p11::Session& s) -> p11::Result<FreshIvSealed> {
    auto h = resolve(s, key);
    if (!h) return unexpected(h.error());
    FreshIvSealed out{Bytes(kIvBytes, 0), {}};
    bool token_iv = known_to_make_iv;
    if (!token_iv)
      if (auto st = s.generate_random(out.iv); !st) return unexpected(st.error());
    // The token writes its own IV into pIv (zeroed when it makes one), so pIv is read after the call.
    auto seal = [&]() {
      CK_GCM_PARAMS params{out.iv.data(), kIvBytes, kIvBytes * 8, const_cast<CK_BYTE*>(aad.data()), aad.size(), 128};
      CK_MECHANISM mech{CKM_AES_GCM, &params, sizeof params};
      return s.encrypt(mech, *h, plaintext, plaintext.size() + 16);
    };
    auto sealed = seal();
    if (!sealed && !token_iv && sealed.error().fault == p11::Fault::token &&
        p11::quirks::refuses_caller_gcm_iv(sealed.error().rv)) {
      // The probe: such a token fills a zeroed IV buffer itself; if it does, it always will.
      std::fill(out.iv.begin(), out.iv.end(), 0);
      token_iv = true;
      sealed = seal();
      if (sealed && std::any_of(out.iv.begin(), out.iv.end(), [](auto b) { return b != 0; }) &&
          !token_makes_gcm_iv_.exchange(true))
        spdlog::warn("the token refuses an AES-GCM IV from the caller and makes its own; XKS uses the token's IVs");
    }
    if (!sealed) {
      if (stale_handle(sealed.error().rv)) forget(key);
      return unexpected(sealed.error());
    }
    // A token that left a zeroed IV buffer as it was did not make one: never answer an all-zero IV.
    if (token_iv && std::all_of(out.iv.begin(), out.iv.end(), [](auto b) { return b == 0; }))
      return unexpected(p11::own_fault(p11::Fault::bad_reply, "C_Encrypt (the token made no AES-GCM IV)"));
    out.ciphertext_and_tag = std::move(*sealed);
    return out;
  });
  if (!r) return unexpected(token_error(r.error(), "encrypt"));
  return std::move(*r);
}

Outcome<SecureBytes> TokenKeyVault::hmac_sha256(const ObjectRef& key, std::span<const std::uint8_t> message) {
  auto r = with_session<SecureBytes>([&](p11::Session& s) -> p11::Result<SecureBytes> {
    auto h = resolve(s, key);
    if (!h) return unexpected(h.error());
    CK_MECHANISM mech{CKM_SHA256_HMAC, nullptr, 0};
    auto out = s.sign(mech, *h, message, 32);
    if (!out && stale_handle(out.error().rv)) forget(key);
    return out;
  });
  if (!r) return unexpected(token_error(r.error(), "hmac"));
  return std::move(*r);
}

Outcome<void> TokenKeyVault::random(std::span<std::uint8_t> out) {
  auto r = with_session<bool>([&](p11::Session& s) -> p11::Result<bool> {
    if (auto st = s.generate_random(out); !st) return unexpected(st.error());
    return true;
  });
  if (!r) return unexpected(token_error(r.error(), "random"));
  return {};
}

p11::Result<AttributeReport> TokenKeyVault::read_attributes(p11::Session& s, CK_OBJECT_HANDLE h) {
  std::vector<CK_ATTRIBUTE_TYPE> types;
  for (const auto& [name, type] : reported_attributes()) types.push_back(type);
  auto values = s.get_bools(h, types);
  if (!values) return unexpected(values.error());
  AttributeReport report;
  for (const auto& [name, type] : reported_attributes()) report[name] = (*values)[type];
  return report;
}

Outcome<AttributeReport> TokenKeyVault::attributes(const ObjectRef& key) {
  auto r = with_session<AttributeReport>([&](p11::Session& s) -> p11::Result<AttributeReport> {
    auto h = resolve(s, key);
    if (!h) return unexpected(h.error());
    auto report = read_attributes(s, *h);
    if (!report && stale_handle(report.error().rv)) forget(key);
    return report;
  });
  if (!r) {
    if (r.error().fault == p11::Fault::not_found) return fail(Code::not_found, "token object " + key.label + " is missing");
    return unexpected(token_error(r.error(), "attribute read"));
  }
  return std::move(*r);
}

Outcome<void> TokenKeyVault::verify(Algorithm algorithm, const ObjectRef& key, bool generated, bool recovery) {
  auto report = attributes(key);
  if (!report) return unexpected(report.error());
  std::string differs;
  for (const auto& want : required_attributes(algorithm, generated, recovery)) {
    const auto& have = (*report)[want.name];
    if (!have && !want.unreported_is_fine) differs += " " + want.name + "=unreported";
    else if (have && *have != want.value) differs += " " + want.name + "=" + (*have ? "true" : "false");
  }
  if (!differs.empty()) return fail(Code::internal, "token object " + key.label + " has" + differs);
  return {};
}

p11::Result<std::vector<CK_OBJECT_HANDLE>> find_carriers(p11::Session& s, const ObjectRef& ref) {
  std::vector<CK_OBJECT_HANDLE> all;
  auto add = [&](CK_ATTRIBUTE_TYPE type, std::span<const std::uint8_t> value) -> p11::Status {
    // An empty id or label would match every object that lacks one.
    if (value.empty()) return {};
    p11::AttributeTemplate t;
    t.add_bytes(type, value);
    auto found = s.find_objects(t, 1024);
    if (!found) return unexpected(found.error());
    for (CK_OBJECT_HANDLE h : *found)
      if (std::find(all.begin(), all.end(), h) == all.end()) all.push_back(h);
    return {};
  };
  if (auto st = add(CKA_ID, ref.id); !st) return unexpected(st.error());
  const auto* label = reinterpret_cast<const std::uint8_t*>(ref.label.data());
  if (auto st = add(CKA_LABEL, std::span(label, ref.label.size())); !st) return unexpected(st.error());
  return all;
}

p11::Result<Shredding> destroy_carriers(p11::Session& s, const ObjectRef& ref) {
  auto found = find_carriers(s, ref);
  if (!found) return unexpected(found.error());
  Shredding result;
  // Every one is tried: one that refuses must not spare the others.
  for (CK_OBJECT_HANDLE h : *found)
    if (auto st = s.destroy_object(h); !st && !result.failure) result.failure = st.error();
  auto left = find_carriers(s, ref);
  if (!left) return unexpected(left.error());
  result.remaining = left->size();
  return result;
}

Outcome<void> TokenKeyVault::destroy(const ObjectRef& key) {
  auto r = with_session<Shredding>([&](p11::Session& s) { return destroy_carriers(s, key); });
  forget(key);
  if (!r) return unexpected(token_error(r.error(), "destroy"));
  if (r->remaining > 0) {
    std::string why = r->failure ? r->failure->describe() : "C_DestroyObject succeeded but they are still found";
    spdlog::error("destroying {}: {} token object(s) still carry its CKA_ID or label ({})", key.label, r->remaining, why);
    return fail(Code::internal, "token object " + key.label + " is not destroyed: " + std::to_string(r->remaining) +
                                    " object(s) still carry its CKA_ID or label");
  }
  return {};
}

Outcome<std::size_t> TokenKeyVault::carriers(const ObjectRef& key) {
  auto r = with_session<std::size_t>([&](p11::Session& s) -> p11::Result<std::size_t> {
    auto found = find_carriers(s, key);
    if (!found) return unexpected(found.error());
    return found->size();
  });
  if (!r) return unexpected(token_error(r.error(), "object lookup"));
  return *r;
}

Outcome<bool> TokenKeyVault::exists(const ObjectRef& key) {
  auto n = carriers(key);
  if (!n) return unexpected(n.error());
  if (*n > 1)
    return fail(Code::internal, "token object " + key.label + " is not unique: " + std::to_string(*n) +
                                    " objects carry its CKA_ID or label");
  return *n == 1;
}

p11::Result<std::vector<ObjectRef>> find_labelled_objects(p11::Session& s, CK_OBJECT_CLASS object_class,
                                                          std::string_view prefix) {
  p11::AttributeTemplate t;
  t.add_ulong(CKA_CLASS, object_class);
  auto found = s.find_objects(t, 100000);
  if (!found) return unexpected(found.error());
  std::vector<ObjectRef> out;
  for (CK_OBJECT_HANDLE h : *found) {
    auto label = s.get_bytes(h, CKA_LABEL);
    if (!label) return unexpected(label.error());
    if (!*label || (*label)->size() < prefix.size() || !std::equal(prefix.begin(), prefix.end(), (*label)->begin()))
      continue;
    auto id = s.get_bytes(h, CKA_ID);
    if (!id) return unexpected(id.error());
    out.push_back(ObjectRef{id->value_or(Bytes{}), std::string((*label)->begin(), (*label)->end())});
  }
  return out;
}

Outcome<TokenInventory> TokenKeyVault::inventory() {
  const auto generation = pool_.generation();
  std::vector<std::pair<std::string, CK_OBJECT_HANDLE>> secret_keys;  // by CKA_ID
  auto r = with_session<TokenInventory>([&](p11::Session& s) -> p11::Result<TokenInventory> {
    secret_keys.clear();
    p11::AttributeTemplate any, secret;
    secret.add_ulong(CKA_CLASS, CKO_SECRET_KEY);
    auto objects = s.find_all(any);
    if (!objects) return unexpected(objects.error());
    auto secrets = s.find_all(secret);
    if (!secrets) return unexpected(secrets.error());
    std::sort(secrets->begin(), secrets->end());
    TokenInventory inventory;
    for (CK_OBJECT_HANDLE h : *objects) {
      auto id = s.get_bytes(h, CKA_ID);
      auto label = id ? s.get_bytes(h, CKA_LABEL) : p11::Result<std::optional<Bytes>>(unexpected(id.error()));
      if (!label) {
        const auto& e = label.error();
        // Destroyed by another process since the search: it is not in the token any more.
        if (e.fault == p11::Fault::token && e.rv == CKR_OBJECT_HANDLE_INVALID) continue;
        // One object the token cannot describe does not make the others unreadable.
        if (e.severity() != p11::Severity::operation) return unexpected(e);
        inventory.add_unreadable("object handle " + std::to_string(h) + " (" + e.describe() + ")");
        continue;
      }
      ObjectRef ref{id->value_or(Bytes{}), label->has_value() ? std::string((*label)->begin(), (*label)->end()) : std::string()};
      const bool is_secret = std::binary_search(secrets->begin(), secrets->end(), h);
      if (is_secret && !ref.id.empty()) secret_keys.emplace_back(id_key(ref), h);
      inventory.add(std::move(ref), is_secret);
    }
    return inventory;
  });
  if (!r) return unexpected(token_error(r.error(), "object inventory"));
  // Remember the handles; an id two secret keys carry is forgotten, so resolve() searches again
  // and reports it.
  std::sort(secret_keys.begin(), secret_keys.end());
  std::lock_guard lock(cache_mutex_);
  if (pool_.generation() != generation) return std::move(*r);  // the token was reset meanwhile
  if (cache_generation_ != generation) {
    handles_.clear();
    cache_generation_ = generation;
  }
  for (std::size_t i = 0; i < secret_keys.size(); ++i) {
    const bool shared = (i > 0 && secret_keys[i - 1].first == secret_keys[i].first) ||
                        (i + 1 < secret_keys.size() && secret_keys[i + 1].first == secret_keys[i].first);
    if (shared) handles_.erase(secret_keys[i].first);  // a copy appeared: look it up (and refuse) again
    else handles_[secret_keys[i].first] = secret_keys[i].second;
  }
  return std::move(*r);
}

bool TokenKeyVault::available() const { return pool_.healthy(); }

std::string TokenKeyVault::unavailable_reason() const { return pool_.last_error(); }

}  // namespace custody::core
