#include "daemon/service/call.h"

#include <boost/json.hpp>

namespace custody::service {

Response json_response(int status, const boost::json::value& body) {
  return Response{status, boost::json::serialize(body)};
}

Response error_response(const core::Error& error, const std::string& request_id) {
  boost::json::object e;
  e["code"] = core::code_name(error.code);
  e["message"] = error.message;
  e["request_id"] = request_id;
  return json_response(core::http_status(error.code), boost::json::object{{"error", std::move(e)}});
}

}  // namespace custody::service
