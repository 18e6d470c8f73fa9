// GET /v1/keys and GET /v1/keys/{name}: metadata of the keys the caller may use. On the admin
// socket (operators only, by its file mode) every key.
#include "daemon/core/key_json.h"
#include "daemon/service/context.h"
#include "daemon/service/routes.h"

namespace custody::service {
namespace {

bool may_see(bool every_key, const core::Key& key, const core::Peer& peer) {
  return every_key || key.policy.allows_any(peer);
}

}  // namespace

Handler make_list_keys_handler(ServiceContext& c, bool every_key) {
  return [&c, every_key](Call& call) {
    boost::json::array keys;
    for (const auto& key : c.registry.all())
      if (may_see(every_key, *key, call.request.peer)) keys.push_back(core::key_to_json(*key, c.meter));
    call.record("keys.list");
    return json_response(200, boost::json::object{{"keys", std::move(keys)}});
  };
}

Handler make_show_key_handler(ServiceContext& c, bool every_key) {
  return [&c, every_key](Call& call) {
    const auto& name = call.params.at(0);
    auto& e = call.record("keys.show");
    e.key = name;
    auto key = c.registry.find(name);
    core::Error err;
    if (!key) err = {core::Code::not_found, "no key named '" + name + "'"};
    else if (!may_see(every_key, *key, call.request.peer))
      err = {core::Code::permission_denied, "uid " + std::to_string(call.request.peer.uid) + " may not use key '" + name + "'"};
    else return json_response(200, core::key_to_json(*key, c.meter));
    e.result = core::code_name(err.code);
    return error_response(err, call.request.request_id);
  };
}

}  // namespace custody::service
