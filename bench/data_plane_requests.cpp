#include "bench/data_plane_requests.h"

#include "bench/http_connection.h"

namespace custody::bench {

namespace {

// A 32-byte DEK ("0123456789abcdef" twice) and a short derive info ("custody-bench"), base64.
constexpr std::string_view kDekBase64 = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
constexpr std::string_view kInfoBase64 = "Y3VzdG9keS1iZW5jaA==";

std::string item_body(std::string_view op, const BenchKeys& keys) {
  if (op == "wrap") return "{\"plaintext\":\"" + std::string(kDekBase64) + "\"}";
  if (op == "unwrap" || op == "rewrap") return "{\"ciphertext\":\"" + keys.ciphertext + "\"}";
  if (op == "datakey") return "{\"length\":32}";
  return "{\"info\":\"" + std::string(kInfoBase64) + "\",\"length\":32}";
}

}  // namespace

Expected<BenchKeys, std::string> make_bench_keys(test::Daemon& daemon, const std::string& aes_name,
                                                 const std::string& hmac_name) {
  if (int s = daemon.create_key(aes_name, "aes-256-gcm", test::allow_me_everything()); s != 201)
    return unexpected("create-key " + aes_name + " answered " + std::to_string(s));
  if (int s = daemon.create_key(hmac_name, "hmac-sha256", test::allow_me_everything()); s != 201)
    return unexpected("create-key " + hmac_name + " answered " + std::to_string(s));
  auto ciphertext = wrap_dek(daemon, aes_name);
  if (!ciphertext) return unexpected(ciphertext.error());
  return BenchKeys{aes_name, hmac_name, std::move(*ciphertext)};
}

Expected<std::string, std::string> wrap_dek(test::Daemon& daemon, const std::string& aes_name) {
  auto [status, body] = daemon.post("/v1/keys/" + aes_name + "/wrap", {{"plaintext", kDekBase64}});
  if (status != 200 || !body.is_object() || !body.as_object().contains("ciphertext"))
    return unexpected("wrap with " + aes_name + " answered " + std::to_string(status) + ": " + boost::json::serialize(body));
  return std::string(body.at("ciphertext").as_string());
}

std::string data_plane_request(std::string_view op, const BenchKeys& keys, unsigned batch_items) {
  const std::string item = item_body(op, keys);
  std::string body;
  if (batch_items == 0) {
    body = item;
  } else {
    body = "{\"batch\":[";
    for (unsigned i = 0; i < batch_items; ++i) body.append(i ? "," : "").append(item);
    body += "]}";
  }
  const std::string& key = op == "derive" ? keys.hmac : keys.aes;
  return http_request("POST", "/v1/keys/" + key + "/" + std::string(op), body);
}

}  // namespace custody::bench
