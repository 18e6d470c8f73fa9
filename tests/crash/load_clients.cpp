#include "tests/crash/load_clients.h"

#include <random>

#include "cli/approval_signer.h"
#include "custody/unix_http_client.h"
#include "common/base64.h"
#include "common/hex.h"
#include "tests/support/softhsm_token.h"

namespace custody::crash {
namespace json = boost::json;
using client::UnixHttpClient;

namespace {

// Long enough for an RSA key generation in the token; a killed daemon fails the call at once.
constexpr auto kClientTimeout = std::chrono::seconds(10);

std::string random_plaintext(std::mt19937_64& rng) {
  std::uniform_int_distribution<int> size(1, 64), byte(0, 255);
  Bytes b(static_cast<std::size_t>(size(rng)));
  for (auto& x : b) x = static_cast<std::uint8_t>(byte(rng));
  return base64_encode(b);
}

std::optional<json::object> parse_object(const std::string& body) {
  boost::system::error_code ec;
  auto v = json::parse(body, ec);
  if (ec || !v.is_object()) return std::nullopt;
  return v.as_object();
}

std::string str(const json::value& v, const char* name) { return std::string(v.at(name).as_string()); }

// A JSON answer to one call; nullopt once the daemon is unreachable.
struct Answer {
  int status = 0;
  json::object body;
};
std::optional<Answer> call(UnixHttpClient& c, const std::string& target, const json::value& body, const std::string& request_id) {
  auto r = c.call("POST", target, json::serialize(body), {{"X-Request-Id", request_id}});
  if (!r) return std::nullopt;
  return Answer{r->status, parse_object(r->body).value_or(json::object{})};
}

// Proposes an operation and approves it as alice then bob, writing each acknowledged step to the
// ledger. The executed request, or nullopt when any step was refused or cut off.
std::optional<json::object> dual_control(UnixHttpClient& admin, const LoadTarget& target, const std::string& operation,
                                         json::object params, const std::string& id_prefix, Ledger& ledger) {
  const std::string propose_id = id_prefix + "-propose";
  auto proposed = call(admin, "/v1/admin/requests", {{"operation", operation}, {"params", std::move(params)}}, propose_id);
  if (!proposed || proposed->status != 201) return std::nullopt;
  const std::string id = str(proposed->body.at("request"), "id");
  ledger.proposed(id, operation);
  ledger.record({propose_id, "admin.propose"});
  auto challenge = base64_decode(str(proposed->body, "challenge"));
  if (!challenge) return std::nullopt;
  for (const char* op : {"alice", "bob"}) {
    auto signature = client::sign_with_key_file(target.operator_keys_dir + "/" + op + ".key",
                                                std::string(challenge->begin(), challenge->end()));
    if (!signature) return std::nullopt;
    const std::string approve_id = id_prefix + "-" + op;
    auto approved = call(admin, "/v1/admin/requests/" + id + "/approvals",
                         {{"operator", op}, {"signature", base64_encode(*signature)}}, approve_id);
    if (!approved || approved->status != 200) return std::nullopt;
    ledger.approved(id, op);
    ledger.record({approve_id, "admin.approve"});
    const auto& request = approved->body.at("request").as_object();
    if (request.at("state").as_string() == "executed") {
      ledger.executed(id, request.at("result"));
      ledger.record({approve_id, "admin.execute"});
      return request;
    }
  }
  return std::nullopt;
}

}  // namespace

void run_data_plane_client(const LoadTarget& target, DataPlaneKind kind, const std::string& id_prefix, std::uint64_t seed,
                           const std::atomic<bool>& stop, Ledger& ledger) {
  UnixHttpClient service(target.service_socket, kClientTimeout);
  std::mt19937_64 rng(seed);
  constexpr std::size_t kBatch = 8;
  for (std::uint64_t n = 0; !stop.load(); ++n) {
    const std::string request_id = id_prefix + "-" + std::to_string(n);
    auto context_of = [&](std::size_t item) {
      return json::object{{"client", id_prefix}, {"n", std::to_string(n)}, {"item", std::to_string(item)}};
    };
    if (kind == DataPlaneKind::datakey) {
      auto a = call(service, "/v1/keys/" + target.key + "/datakey", {{"length", 32}, {"context", context_of(0)}}, request_id);
      if (!a) return;
      if (a->status != 200) continue;
      ledger.ciphertext({request_id, target.key, str(a->body, "ciphertext"), str(a->body, "plaintext"), context_of(0),
                         a->body.at("key_version").to_number<std::int64_t>()});
      ledger.record({request_id, "datakey"});
      continue;
    }
    const std::size_t items = kind == DataPlaneKind::batch_wrap ? kBatch : 1;
    std::vector<std::string> plaintexts;
    json::array batch;
    for (std::size_t i = 0; i < items; ++i) {
      plaintexts.push_back(random_plaintext(rng));
      batch.push_back(json::object{{"plaintext", plaintexts.back()}, {"context", context_of(i)}});
    }
    const json::value body = kind == DataPlaneKind::batch_wrap ? json::value{{"batch", batch}} : batch.at(0);
    auto a = call(service, "/v1/keys/" + target.key + "/wrap", body, request_id);
    if (!a) return;
    if (a->status != 200) continue;
    std::size_t acknowledged = 0;
    for (std::size_t i = 0; i < items; ++i) {
      const json::object& result = kind == DataPlaneKind::batch_wrap ? a->body.at("batch").at(i).as_object() : a->body;
      if (result.contains("error")) continue;
      ledger.ciphertext({request_id, target.key, str(result, "ciphertext"), plaintexts[i], context_of(i),
                         result.at("key_version").to_number<std::int64_t>()});
      ++acknowledged;
    }
    if (acknowledged) ledger.record({request_id, "wrap", acknowledged});
  }
}

void run_rotator(const LoadTarget& target, const std::string& id_prefix, const std::atomic<bool>& stop, Ledger& ledger) {
  UnixHttpClient admin(target.admin_socket, kClientTimeout);
  for (int n = 0; !stop.load(); ++n) {
    // A refused or cut-off step ends this client only when the daemon is gone.
    if (!dual_control(admin, target, "rotate-key", {{"name", target.key}}, id_prefix + "-" + std::to_string(n), ledger) &&
        !admin.call("GET", "/v1/health"))
      return;
  }
}

void run_importer(const LoadTarget& target, const boost::json::object& job, const std::string& next_key_name,
                  const std::string& id_prefix, const std::string& work_dir, const std::atomic<bool>& stop, Ledger& ledger) {
  using test::run;
  UnixHttpClient admin(target.admin_socket, kClientTimeout);
  const std::string job_id = str(job, "id");
  const std::string method = str(job, "method");
  test::write_file(work_dir + "/job.pem", str(job, "public_key"));
  const std::string hash = method.find("sha1") != std::string::npos ? "sha1" : "sha256";
  // CONTRACT §8's recipe, and the KCV computed by OpenSSL from the key bytes.
  const std::string recipe =
      "cd " + work_dir + " && openssl rand -out K.bin 32 && openssl rand -out E.bin 32 && "
      "openssl pkeyutl -encrypt -pubin -inkey job.pem -in E.bin -out E.wrapped -pkeyopt rsa_padding_mode:oaep "
      "-pkeyopt rsa_oaep_md:" + hash + " -pkeyopt rsa_mgf1_md:" + hash +
      " && openssl enc -id-aes256-wrap-pad -iv A65959A6 -K \"$(xxd -p -c 64 E.bin)\" -in K.bin -out K.wrapped"
      " && cat E.wrapped K.wrapped > payload.bin"
      " && head -c 16 /dev/zero | openssl enc -aes-256-ecb -nopad -K \"$(xxd -p -c 64 K.bin)\" > kcv.bin";
  if (run(recipe) != 0 || stop.load()) return;
  const std::string key_bytes = test::read_file(work_dir + "/K.bin");
  const std::string kcv_block = test::read_file(work_dir + "/kcv.bin");
  if (key_bytes.size() != 32 || kcv_block.size() < 3) return;
  const std::string kcv = hex_upper(std::span(reinterpret_cast<const std::uint8_t*>(kcv_block.data()), 3));
  const std::string request_id = id_prefix + "-import";
  auto a = call(admin, "/v1/admin/import-jobs/" + job_id + "/import",
                {{"wrapped_key", base64_encode(to_bytes(test::read_file(work_dir + "/payload.bin")))}, {"kcv", kcv}},
                request_id);
  if (!a) return;
  if (a->status == 200) {
    ledger.imported({request_id, job_id, str(job, "key_name"), a->body.at("version").to_number<std::int64_t>(), kcv, key_bytes});
    ledger.record({request_id, "admin.import"});
  }
  // The next job: its key generation in the token is a long window for the kill.
  json::object params{{"key_name", next_key_name}, {"algorithm", "aes-256-gcm"}, {"method", method},
                      {"policy", json::parse(target.policy_json)}};
  if (auto request = dual_control(admin, target, "create-import-job", std::move(params), id_prefix + "-job", ledger))
    ledger.import_job(str(request->at("result").at("import_job"), "id"));
}

}  // namespace custody::crash
