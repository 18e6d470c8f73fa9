// POST /v1/keys/{name}/rewrap: ciphertext, context → ciphertext under the current version.
// The plaintext stays inside the daemon, in wiped memory.
#include "common/base64.h"
#include "daemon/service/data_plane_handler.h"

namespace custody::service {

Handler make_rewrap_handler(ServiceContext& context) {
  return data_plane_handler(
      context, core::Operation::rewrap, {"ciphertext", "context"},
      [&context](const std::string& key, const Fields& f, const core::Peer& peer,
                 core::AuditFacts& facts) -> core::Outcome<boost::json::object> {
        auto ctx = core::parse_context(f.get("context"));
        if (!ctx) return unexpected(ctx.error());
        auto blob = f.base64("ciphertext", 1, kMaxBlob);
        if (!blob) return unexpected(blob.error());
        auto sealed = context.data_plane.rewrap(peer, key, *blob, *ctx, facts);
        if (!sealed) return unexpected(sealed.error());
        return boost::json::object{{"ciphertext", base64_encode(sealed->ciphertext)}, {"key_version", sealed->version}};
      });
}

}  // namespace custody::service
