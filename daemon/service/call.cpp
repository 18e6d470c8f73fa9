#include "daemon/service/call.h"

#include <openssl/crypto.h>

#include <boost/json.hpp>

namespace custody::service {

namespace {

// Serialized straight into wiping memory: boost::json::serialize grows a std::string and would
// free each outgrown copy of a plaintext or key unwiped.
template <class Json>
Response serialize_wiping(int status, const Json& body) {
  boost::json::serializer serializer;
  serializer.reset(&body);
  // Most bodies fit on the stack: then the heap gets one block of the exact size.
  char first[2048];
  const std::size_t in_first = serializer.read(first, sizeof first).size();
  WipingString out(std::string_view(first, in_first));
  OPENSSL_cleanse(first, in_first);
  std::size_t used = in_first;
  while (!serializer.done()) {
    if (used == out.size()) out.resize(2 * out.size());
    used += serializer.read(out.data() + used, out.size() - used).size();
  }
  out.resize(used);
  return Response{status, std::move(out)};
}

}  // namespace

Response json_response(int status, const boost::json::value& body) { return serialize_wiping(status, body); }
Response json_response(int status, const boost::json::object& body) { return serialize_wiping(status, body); }

Response error_response(const core::Error& error, const std::string& request_id) {
  boost::json::object e;
  e["code"] = core::code_name(error.code);
  e["message"] = error.message;
  e["request_id"] = request_id;
  return json_response(core::http_status(error.code), boost::json::object{{"error", std::move(e)}});
}

Response refuse_recorded(Call& call, core::AuditEvent& e, const core::Error& error) {
  e.result = core::code_name(error.code);
  e.extra["message"] = error.message;
  return error_response(error, call.request.request_id);
}

}  // namespace custody::service
