// POST /v1/attestation: nonce (base64, 0..64 bytes), keys (optional list of names) → the signed
// envelope of CONTRACT §6. On the service socket a report covers the keys the caller may use; on
// the admin socket, every key.
#include "daemon/service/context.h"
#include "daemon/service/json_body.h"
#include "daemon/service/routes.h"

namespace custody::service {

Handler make_attestation_handler(ServiceContext& c, bool every_key) {
  return [&c, every_key](Call& call) -> Response {
    auto& e = call.record("attestation");
    auto fail_with = [&](const core::Error& err) {
      e.result = core::code_name(err.code);
      return error_response(err, call.request.request_id);
    };
    auto body = parse_body(call.request.body.empty() ? "{}" : call.request.body, c.max_json_depth);
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
        auto key = c.registry.find(std::string(n.as_string()));
        if (!key) return fail_with({core::Code::not_found, "no key named '" + std::string(n.as_string()) + "'"});
        if (!every_key && !key->policy.allows_any(call.request.peer))
          return fail_with({core::Code::permission_denied, "uid " + std::to_string(call.request.peer.uid) +
                                                               " may not use key '" + key->name + "'"});
        keys.push_back(std::move(key));
      }
    } else {
      for (auto& key : c.registry.all())
        if (every_key || key->policy.allows_any(call.request.peer)) keys.push_back(std::move(key));
    }
    auto envelope = c.attestor->attest(*nonce, keys);
    if (!envelope) return fail_with(envelope.error());
    e.extra["keys"] = keys.size();
    return json_response(200, *envelope);
  };
}

}  // namespace custody::service
