// GET /v1/keys and GET /v1/keys/{name}: metadata of the keys the caller may use. On the admin
// socket (operators only, by its file mode) every key. On the service socket a key that does not
// exist and a key the caller may not use get the same 403.
#include "daemon/core/keys/key_json.h"
#include "daemon/service/context.h"
#include "daemon/service/key_visibility.h"
#include "daemon/service/routes.h"

namespace custody::service {

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
    if (key && may_see(every_key, *key, call.request.peer)) return json_response(200, core::key_to_json(*key, c.meter));
    auto err = unknown_or_not_yours(every_key, key != nullptr, name, call.request.peer);
    e.result = core::code_name(err.code);
    if (!key) e.extra["key_exists"] = false;
    return error_response(err, call.request.request_id);
  };
}

}  // namespace custody::service
