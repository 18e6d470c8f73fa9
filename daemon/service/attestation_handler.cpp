// POST /v1/attestation: nonce (base64, 0..64 bytes), keys (optional list of names) → the signed
// envelope of CONTRACT §6. On the service socket a report covers the keys the caller may use (and
// asking for a missing key gets the 403 a forbidden one gets); on the admin socket, every key.
#include "daemon/service/context.h"
#include "daemon/service/json_body.h"
#include "daemon/service/key_visibility.h"
#include "daemon/service/routes.h"

namespace custody::service {

Handler make_attestation_handler(ServiceContext& c, bool every_key) {
  return [&c, every_key](Call& call) -> Response {
    auto& e = call.record("attestation");
    auto fail_with = [&](const core::Error& err) {
      e.result = core::code_name(err.code);
      return error_response(err, call.request.request_id);
    };
    const std::string_view raw = call.request.body;
    auto body = parse_body(raw.empty() ? "{}" : raw, c.max_json_depth);
    if (!body) return fail_with(body.error());
    Fields f(*body);
    if (auto ok = f.only({"nonce", "keys"}); !ok) return fail_with(ok.error());
    auto nonce = f.base64("nonce", 0, 64, false);
    if (!nonce) return fail_with(nonce.error());
    std::vector<std::shared_ptr<const core::Key>> keys;
    if (const auto* wanted = f.get("keys"); wanted && !wanted->is_null()) {
      if (!wanted->is_array()) return fail_with({core::Code::invalid_argument, "'keys' must be a list of key names"});
      for (const auto& n : wanted->as_array()) {
        if (!n.is_string()) return fail_with({core::Code::invalid_argument, "'keys' must be a list of key names"});
        const std::string name(n.as_string());
        auto key = c.registry.find(name);
        if (!key || !may_see(every_key, *key, call.request.peer)) {
          if (!key) e.extra["key_exists"] = false;
          return fail_with(unknown_or_not_yours(every_key, key != nullptr, name, call.request.peer));
        }
        keys.push_back(std::move(key));
      }
    } else {
      for (auto& key : c.registry.all())
        if (may_see(every_key, *key, call.request.peer)) keys.push_back(std::move(key));
    }
    auto envelope = c.attestor->attest(*nonce, keys);
    if (!envelope) return fail_with(envelope.error());
    e.extra["keys"] = keys.size();
    return json_response(200, *envelope);
  };
}

}  // namespace custody::service
