#include "daemon/core/recovery/recovery_bundle.h"

#include <ctime>

#include <boost/json.hpp>

#include "common/base64.h"
#include "common/hex.h"
#include "common/pem.h"
#include "daemon/core/clock.h"
#include "daemon/core/recovery/recovery_key.h"

namespace custody::core {
namespace {

namespace json = boost::json;

Unexpected<Error> bad(const std::string& what) { return fail(Code::invalid_argument, "recovery bundle: " + what); }

// "YYYY-MM-DDTHH:MM:SSZ", as rfc3339_seconds writes it.
std::optional<std::int64_t> parse_time(std::string_view s) {
  if (s.size() != 20 || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':' || s[19] != 'Z')
    return std::nullopt;
  auto num = [&](std::size_t at, std::size_t n) -> int {
    int v = 0;
    for (std::size_t i = at; i < at + n; ++i) {
      if (s[i] < '0' || s[i] > '9') return -1;
      v = v * 10 + (s[i] - '0');
    }
    return v;
  };
  std::tm tm{};
  tm.tm_year = num(0, 4) - 1900;
  tm.tm_mon = num(5, 2) - 1;
  tm.tm_mday = num(8, 2);
  tm.tm_hour = num(11, 2);
  tm.tm_min = num(14, 2);
  tm.tm_sec = num(17, 2);
  // Up to 2200: what the clock's nanosecond time points can hold (past 2262 they overflow).
  if (tm.tm_year < 70 || tm.tm_year > 2200 - 1900 || tm.tm_mon < 0 || tm.tm_mon > 11 || tm.tm_mday < 1 || tm.tm_mday > 31 || tm.tm_hour < 0 ||
      tm.tm_hour > 23 || tm.tm_min < 0 || tm.tm_min > 59 || tm.tm_sec < 0 || tm.tm_sec > 60)
    return std::nullopt;
  return static_cast<std::int64_t>(timegm(&tm));
}

bool lower_hex(std::string_view s, std::size_t size) {
  if (s.size() != size) return false;
  for (char c : s)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  return true;
}

// Reads the members of one JSON object, refusing unknown ones and naming where it is.
class Reader {
 public:
  Reader(const json::value& v, std::string where) : where_(std::move(where)) {
    if (v.is_object()) object_ = &v.as_object();
  }
  Outcome<void> shape(std::initializer_list<std::string_view> allowed) const {
    if (!object_) return bad(where_ + " must be an object");
    for (const auto& m : *object_) {
      bool known = false;
      for (auto a : allowed) known = known || m.key() == a;
      if (!known) return bad("unknown member " + where_ + "." + std::string(m.key()));
    }
    return {};
  }
  const json::value* get(std::string_view name) const { return object_->if_contains(name); }
  Outcome<std::string> string(std::string_view name, std::size_t max = 256) const {
    const auto* v = get(name);
    if (!v || !v->is_string()) return bad(path(name) + " must be a string");
    if (v->as_string().size() > max) return bad(path(name) + " is longer than " + std::to_string(max));
    return std::string(v->as_string());
  }
  Outcome<std::uint32_t> number(std::string_view name, std::uint32_t min) const {
    const auto* v = get(name);
    if (!v || !(v->is_int64() || v->is_uint64())) return bad(path(name) + " must be a whole number");
    const std::int64_t n = v->is_int64() ? v->as_int64() : static_cast<std::int64_t>(std::min<std::uint64_t>(v->as_uint64(), UINT32_MAX + 1ULL));
    if (n < min || n > UINT32_MAX) return bad(path(name) + " is out of range");
    return static_cast<std::uint32_t>(n);
  }
  Outcome<std::int64_t> time(std::string_view name) const {
    auto s = string(name, 32);
    if (!s) return unexpected(s.error());
    auto t = parse_time(*s);
    if (!t) return bad(path(name) + " must be an RFC 3339 UTC time such as 2026-01-31T12:00:00Z");
    return *t;
  }
  Outcome<Bytes> base64(std::string_view name, std::size_t max) const {
    auto s = string(name, (max + 2) / 3 * 4);
    if (!s) return unexpected(s.error());
    auto b = base64_decode(*s);
    if (!b || b->empty()) return bad(path(name) + " must be non-empty base64");
    return Bytes(b->begin(), b->end());
  }
  std::string path(std::string_view name) const { return where_ + "." + std::string(name); }

 private:
  const json::object* object_ = nullptr;
  std::string where_;
};

Outcome<BundleVersion> parse_version(const json::value& v, const std::string& where, std::uint32_t expected) {
  Reader r(v, where);
  if (auto ok = r.shape({"version", "state", "origin", "created_at", "wrapped", "sample"}); !ok) return unexpected(ok.error());
  BundleVersion out;
  auto version = r.number("version", 1);
  if (!version) return unexpected(version.error());
  if (*version != expected) return bad(where + ".version must be " + std::to_string(expected) + " (versions in order, no gaps)");
  out.version = *version;
  auto state = r.string("state", 16);
  if (!state) return unexpected(state.error());
  if (*state != "enabled" && *state != "destroyed") return bad(where + ".state must be enabled or destroyed");
  out.state = *state;
  auto origin = r.string("origin", 32);
  if (!origin) return unexpected(origin.error());
  out.origin = *origin;
  auto created = r.time("created_at");
  if (!created) return unexpected(created.error());
  out.created_at = *created;
  if (out.state == "destroyed") {
    if (r.get("wrapped") || r.get("sample")) return bad(where + " is destroyed and must carry no key material or sample");
    return out;
  }
  auto wrapped = r.base64("wrapped", 1024);
  if (!wrapped) return unexpected(wrapped.error());
  out.wrapped = std::move(*wrapped);
  const auto* sv = r.get("sample");
  if (!sv) return bad(where + ".sample is required");
  Reader sr(*sv, where + ".sample");
  if (auto ok = sr.shape({"blob", "sha256"}); !ok) return unexpected(ok.error());
  auto blob = sr.base64("blob", 1024);
  if (!blob) return unexpected(blob.error());
  auto digest = sr.string("sha256", 64);
  if (!digest) return unexpected(digest.error());
  if (!lower_hex(*digest, 64)) return bad(sr.path("sha256") + " must be 64 lower-case hex digits");
  out.sample = BundleSample{std::move(*blob), std::move(*digest)};
  return out;
}

Outcome<BundleKey> parse_key(const json::value& v, const std::string& where) {
  Reader r(v, where);
  if (auto ok = r.shape({"name", "algorithm", "state", "policy", "current_version", "min_decrypt_version", "versions"}); !ok)
    return unexpected(ok.error());
  BundleKey k;
  auto name = r.string("name", 63);
  if (!name) return unexpected(name.error());
  if (!valid_key_name(*name)) return bad(where + ".name is not a valid key name");
  k.name = *name;
  auto alg = r.string("algorithm", 32);
  if (!alg) return unexpected(alg.error());
  auto algorithm = parse_algorithm(*alg);
  if (!algorithm || *algorithm == Algorithm::aes_256_kwp_transport)
    return bad(where + ".algorithm must be aes-256-gcm or hmac-sha256");
  k.algorithm = *algorithm;
  auto st = r.string("state", 32);
  if (!st) return unexpected(st.error());
  auto state = parse_key_state(*st);
  if (!state) return bad(where + ".state is not a key state");
  k.state = *state;
  const auto* policy = r.get("policy");
  if (!policy || !policy->is_array()) return bad(where + ".policy must be a list of rules");
  k.policy = *policy;
  auto current = r.number("current_version", 1);
  if (!current) return unexpected(current.error());
  k.current_version = *current;
  auto min = r.number("min_decrypt_version", 1);
  if (!min) return unexpected(min.error());
  if (*min > k.current_version) return bad(where + ".min_decrypt_version is above current_version");
  k.min_decrypt_version = *min;
  const auto* versions = r.get("versions");
  if (!versions || !versions->is_array()) return bad(where + ".versions must be a list");
  const auto& list = versions->as_array();
  if (list.size() != k.current_version || list.size() > kMaxBundleVersions)
    return bad(where + ".versions must list versions 1.." + std::to_string(k.current_version));
  for (std::size_t i = 0; i < list.size(); ++i) {
    auto v = parse_version(list[i], where + ".versions[" + std::to_string(i) + "]", static_cast<std::uint32_t>(i + 1));
    if (!v) return unexpected(v.error());
    k.versions.push_back(std::move(*v));
  }
  if (k.state == KeyState::destroyed) {
    for (const auto& v : k.versions)
      if (v.state != "destroyed") return bad(where + " is destroyed but lists a live version");
  }
  return k;
}

}  // namespace

std::string encode_bundle(const RecoveryBundle& b) {
  json::object o;
  o["format"] = kRecoveryBundleFormat;
  o["id"] = b.id;
  o["created_at"] = rfc3339_seconds(b.created_at);
  o["daemon"] = {{"version", b.daemon_version}, {"instance_id", b.instance_id}};
  o["recovery_key"] = {{"key_id", b.recovery_key_id}, {"mechanism", b.mechanism}};
  json::array approved;
  for (const auto& a : b.approved_by) approved.emplace_back(a);
  o["approved_by"] = std::move(approved);
  json::array keys;
  for (const auto& k : b.keys) {
    json::array versions;
    for (const auto& v : k.versions) {
      json::object vo{{"version", v.version},
                      {"state", v.state},
                      {"origin", v.origin},
                      {"created_at", rfc3339_seconds(v.created_at)}};
      if (v.wrapped) vo["wrapped"] = base64_encode(*v.wrapped);
      if (v.sample) vo["sample"] = {{"blob", base64_encode(v.sample->blob)}, {"sha256", v.sample->sha256}};
      versions.push_back(std::move(vo));
    }
    keys.push_back({{"name", k.name},
                    {"algorithm", algorithm_name(k.algorithm)},
                    {"state", key_state_name(k.state)},
                    {"policy", k.policy},
                    {"current_version", k.current_version},
                    {"min_decrypt_version", k.min_decrypt_version},
                    {"versions", std::move(versions)}});
  }
  o["keys"] = std::move(keys);
  return json::serialize(o);
}

Outcome<RecoveryBundle> parse_bundle(std::string_view bytes) {
  boost::system::error_code ec;
  json::parse_options options;
  options.max_depth = 16;
  const json::value v = json::parse(bytes, ec, {}, options);
  if (ec) return bad("B is not JSON: " + ec.message());
  Reader r(v, "bundle");
  if (auto ok = r.shape({"format", "id", "created_at", "daemon", "recovery_key", "approved_by", "keys"}); !ok)
    return unexpected(ok.error());
  RecoveryBundle b;
  auto format = r.string("format", 64);
  if (!format) return unexpected(format.error());
  if (*format != kRecoveryBundleFormat) return bad("format must be " + std::string(kRecoveryBundleFormat));
  auto id = r.string("id", 64);
  if (!id) return unexpected(id.error());
  if (id->empty()) return bad("id is empty");
  b.id = *id;
  auto created = r.time("created_at");
  if (!created) return unexpected(created.error());
  b.created_at = *created;
  const auto* daemon = r.get("daemon");
  if (!daemon) return bad("daemon is required");
  Reader dr(*daemon, "bundle.daemon");
  if (auto ok = dr.shape({"version", "instance_id"}); !ok) return unexpected(ok.error());
  auto dv = dr.string("version", 64);
  if (!dv) return unexpected(dv.error());
  auto di = dr.string("instance_id", 128);
  if (!di) return unexpected(di.error());
  b.daemon_version = *dv;
  b.instance_id = *di;
  const auto* rk = r.get("recovery_key");
  if (!rk) return bad("recovery_key is required");
  Reader kr(*rk, "bundle.recovery_key");
  if (auto ok = kr.shape({"key_id", "mechanism"}); !ok) return unexpected(ok.error());
  auto key_id = kr.string("key_id", 64);
  if (!key_id) return unexpected(key_id.error());
  if (!lower_hex(*key_id, 64)) return bad("recovery_key.key_id must be 64 lower-case hex digits");
  b.recovery_key_id = *key_id;
  auto mech = kr.string("mechanism", 32);
  if (!mech) return unexpected(mech.error());
  if (*mech != "rsa-oaep-sha256" && *mech != "rsa-oaep-sha1")
    return bad("recovery_key.mechanism must be rsa-oaep-sha256 or rsa-oaep-sha1");
  b.mechanism = *mech;
  const auto* approved = r.get("approved_by");
  if (!approved || !approved->is_array() || approved->as_array().size() > 64)
    return bad("approved_by must be a list of operator names");
  for (const auto& a : approved->as_array()) {
    if (!a.is_string() || a.as_string().empty() || a.as_string().size() > 64)
      return bad("approved_by must be a list of operator names");
    b.approved_by.emplace_back(a.as_string());
  }
  const auto* keys = r.get("keys");
  if (!keys || !keys->is_array()) return bad("keys must be a list");
  if (keys->as_array().size() > kMaxBundleKeys) return bad("more than " + std::to_string(kMaxBundleKeys) + " keys");
  for (std::size_t i = 0; i < keys->as_array().size(); ++i) {
    auto k = parse_key(keys->as_array()[i], "bundle.keys[" + std::to_string(i) + "]");
    if (!k) return unexpected(k.error());
    for (const auto& other : b.keys)
      if (other.name == k->name) return bad("key '" + k->name + "' is listed twice");
    b.keys.push_back(std::move(*k));
  }
  return b;
}

json::object envelope_to_json(const BundleEnvelope& e) {
  return {{"bundle", base64_encode(to_bytes(e.bundle))},
          {"signature", base64_encode(e.signature)},
          {"public_key", e.public_key_pem},
          {"key_id", e.key_id}};
}

Outcome<BundleEnvelope> parse_envelope(const json::value& v) {
  Reader r(v, "envelope");
  if (auto ok = r.shape({"bundle", "signature", "public_key", "key_id"}); !ok) return unexpected(ok.error());
  BundleEnvelope e;
  auto bundle = r.base64("bundle", 48 * 1024 * 1024);
  if (!bundle) return unexpected(bundle.error());
  e.bundle.assign(bundle->begin(), bundle->end());
  auto signature = r.base64("signature", 256);
  if (!signature) return unexpected(signature.error());
  e.signature = std::move(*signature);
  auto pem = r.string("public_key", 4096);
  if (!pem) return unexpected(pem.error());
  e.public_key_pem = *pem;
  auto key_id = r.string("key_id", 64);
  if (!key_id) return unexpected(key_id.error());
  e.key_id = *key_id;
  return e;
}

Outcome<RecoveryBundle> verify_envelope(const BundleEnvelope& e, std::string_view pinned_pem) {
  auto pinned_id = public_key_id(pinned_pem);
  if (!pinned_id) return bad("the pinned attestation public key: " + pinned_id.error());
  auto envelope_id = public_key_id(e.public_key_pem);
  if (!envelope_id) return bad("public_key: " + envelope_id.error());
  // The pinned key decides; the envelope's own key and key_id only have to agree with it.
  if (*envelope_id != *pinned_id || e.key_id != *pinned_id)
    return bad("signed by key " + e.key_id + ", not by the pinned attestation key " + *pinned_id);
  auto key = read_public_key_pem(pinned_pem);
  if (!key || !verify_sha256_signature(key.get(), e.bundle, e.signature))
    return bad("the signature does not verify with the pinned attestation key (altered or not signed by it)");
  return parse_bundle(e.bundle);
}

}  // namespace custody::core
