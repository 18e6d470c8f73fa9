// POST /v1/keys/{name}/datakey: length (1..64, default 32), context, include_plaintext (default
// true) → plaintext (if asked), ciphertext, key_version.
#include "common/base64.h"
#include "daemon/service/data_plane_handler.h"

namespace custody::service {

Handler make_datakey_handler(ServiceContext& context) {
  return data_plane_handler(
      context, core::Operation::datakey, {"length", "context", "include_plaintext"},
      [&context](const std::string& key, const Fields& f, const core::Peer& peer,
                 core::AuditFacts& facts) -> core::Outcome<boost::json::object> {
        auto ctx = core::parse_context(f.get("context"));
        if (!ctx) return unexpected(ctx.error());
        auto length = f.number("length", 1, core::kMaxDataKeyLength);
        if (!length) return unexpected(length.error());
        auto include = f.boolean("include_plaintext", true);
        if (!include) return unexpected(include.error());
        auto dk = context.data_plane.datakey(peer, key, length->value_or(32), *ctx, facts);
        if (!dk) return unexpected(dk.error());
        boost::json::object out(zeroizing_storage());
        if (*include) out["plaintext"] = secret_base64(dk->plaintext);
        out["ciphertext"] = base64_encode(dk->ciphertext);
        out["key_version"] = dk->version;
        return out;
      });
}

}  // namespace custody::service
