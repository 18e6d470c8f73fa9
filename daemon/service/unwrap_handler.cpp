// POST /v1/keys/{name}/unwrap: ciphertext, context → plaintext, key_version.
#include "common/base64.h"
#include "daemon/service/data_plane_handler.h"

namespace custody::service {

Handler make_unwrap_handler(ServiceContext& context) {
  return data_plane_handler(
      context, core::Operation::unwrap, {"ciphertext", "context"},
      [&context](const std::string& key, const Fields& f, const core::Peer& peer,
                 core::AuditFacts& facts) -> core::Outcome<boost::json::object> {
        auto ctx = core::parse_context(f.get("context"));
        if (!ctx) return unexpected(ctx.error());
        auto blob = f.base64("ciphertext", 1, kMaxBlob);
        if (!blob) return unexpected(blob.error());
        auto opened = context.data_plane.unwrap(peer, key, *blob, *ctx, facts);
        if (!opened) return unexpected(opened.error());
        boost::json::object out(zeroizing_storage());
        out["plaintext"] = secret_base64(opened->plaintext);
        out["key_version"] = opened->version;
        return out;
      });
}

}  // namespace custody::service
