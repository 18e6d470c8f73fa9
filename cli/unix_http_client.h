#pragma once
// A small blocking HTTP/1.1 client over a Unix socket, for custodyctl and the tests.
#include <chrono>
#include <map>
#include <string>

#include "common/expected.h"

namespace custody::client {

struct HttpReply {
  int status = 0;
  std::string body;
  std::string request_id;
  std::string content_type;
};

class UnixHttpClient {
 public:
  explicit UnixHttpClient(std::string socket_path, std::chrono::milliseconds timeout = std::chrono::seconds(30));
  ~UnixHttpClient();
  UnixHttpClient(const UnixHttpClient&) = delete;
  UnixHttpClient& operator=(const UnixHttpClient&) = delete;

  // Keeps the connection open between calls; reconnects once if the daemon closed it.
  Expected<HttpReply, std::string> call(const std::string& method, const std::string& target, const std::string& body = "",
                                        const std::map<std::string, std::string>& headers = {});

 private:
  struct Impl;
  Impl* impl_;
};

}  // namespace custody::client
