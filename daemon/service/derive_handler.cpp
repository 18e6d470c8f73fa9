// POST /v1/keys/{name}/derive: info (0..1024 bytes), length (1..1024), version (optional) →
// key = HKDF-Expand(SHA-256, PRK = the key version, info, length) (CONTRACT §5), key_version.
#include "daemon/service/data_plane_handler.h"

namespace custody::service {

Handler make_derive_handler(ServiceContext& context) {
  return data_plane_handler(
      context, core::Operation::derive, {"info", "length", "version"},
      [&context](const std::string& key, const Fields& f, const core::Peer& peer,
                 core::AuditFacts& facts) -> core::Outcome<boost::json::object> {
        auto info = f.base64("info", 0, core::kMaxDeriveInfo, false);
        if (!info) return unexpected(info.error());
        auto length = f.number("length", 1, core::kMaxDeriveLength);
        if (!length) return unexpected(length.error());
        if (!*length) return core::fail(core::Code::invalid_argument, "'length' is required");
        auto version = f.number("version", 1, UINT32_MAX);
        if (!version) return unexpected(version.error());
        std::optional<std::uint32_t> v;
        if (*version) v = static_cast<std::uint32_t>(**version);
        // A caller the key's policy names sees the key anyway (GET /v1/keys): tell them its
        // algorithm cannot derive, not that the policy forbids derive.
        if (auto named = context.registry.find(key);
            named && named->algorithm != core::Algorithm::hmac_sha256 && named->policy.allows_any(peer))
          return core::fail(core::Code::invalid_argument, "key '" + key + "' is " +
                                                              core::algorithm_name(named->algorithm) +
                                                              ", which cannot derive; derive needs an hmac-sha256 key");
        auto derived = context.data_plane.derive(peer, key, *info, static_cast<std::size_t>(**length), v, facts);
        if (!derived) return unexpected(derived.error());
        boost::json::object out(zeroizing_storage());
        out["key"] = secret_base64(derived->plaintext);
        out["key_version"] = derived->version;
        return out;
      });
}

}  // namespace custody::service
