// POST /v1/keys/{name}/wrap: plaintext (1..8192 bytes), context → ciphertext, key_version.
#include "common/base64.h"
#include "daemon/service/data_plane_handler.h"

namespace custody::service {

Handler make_wrap_handler(ServiceContext& context) {
  return data_plane_handler(
      context, core::Operation::wrap, {"plaintext", "context"},
      [&context](const std::string& key, const Fields& f, const core::Peer& peer,
                 core::AuditFacts& facts) -> core::Outcome<boost::json::object> {
        auto ctx = core::parse_context(f.get("context"));
        if (!ctx) return unexpected(ctx.error());
        auto plaintext = f.base64("plaintext", 1, core::kMaxWrapPlaintext);
        if (!plaintext) return unexpected(plaintext.error());
        auto sealed = context.data_plane.wrap(peer, key, *plaintext, *ctx, facts);
        if (!sealed) return unexpected(sealed.error());
        return boost::json::object{{"ciphertext", base64_encode(sealed->ciphertext)}, {"key_version", sealed->version}};
      });
}

}  // namespace custody::service
