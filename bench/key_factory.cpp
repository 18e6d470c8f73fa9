#include "bench/key_factory.h"

#include <atomic>
#include <mutex>
#include <thread>
#include <vector>

#include "cli/approval_signer.h"
#include "common/base64.h"

namespace custody::bench {

namespace {

// Proposes the operation and approves it as alice; with a quorum of one it executes there.
Expected<void, std::string> one_approval_operation(client::UnixHttpClient& admin, const std::string& alice_key,
                                                   const std::string& operation, boost::json::object params) {
  const std::string what = operation + " " + std::string(params.at("name").as_string());
  boost::json::value body = {{"operation", operation}, {"params", std::move(params)}};
  auto proposed = admin.call("POST", "/v1/admin/requests", boost::json::serialize(body));
  if (!proposed) return unexpected(what + ": " + proposed.error());
  if (proposed->status != 201) return unexpected(what + " proposed: HTTP " + std::to_string(proposed->status) + " " + proposed->body);
  boost::system::error_code ec;
  auto p = boost::json::parse(proposed->body, ec);
  if (ec || !p.is_object()) return unexpected(what + ": unparsable proposal answer");
  const std::string id(p.at("request").at("id").as_string());
  auto challenge = base64_decode(std::string(p.at("challenge").as_string()));
  if (!challenge) return unexpected(what + ": bad challenge");
  auto signature = client::sign_with_key_file(alice_key, std::string(challenge->begin(), challenge->end()));
  if (!signature) return unexpected(what + ": " + signature.error());
  boost::json::value approval = {{"operator", "alice"}, {"signature", base64_encode(*signature)}};
  auto approved = admin.call("POST", "/v1/admin/requests/" + id + "/approvals", boost::json::serialize(approval));
  if (!approved) return unexpected(what + ": " + approved.error());
  if (approved->status != 200) return unexpected(what + " approved: HTTP " + std::to_string(approved->status) + " " + approved->body);
  auto a = boost::json::parse(approved->body, ec);
  if (ec || !a.is_object() || a.at("request").at("state") != "executed")
    return unexpected(what + " did not execute: " + approved->body.substr(0, 300));
  return {};
}

}  // namespace

Expected<void, std::string> make_keys(test::Daemon& daemon, const KeyBatch& batch,
                                      const std::function<void(unsigned)>& progress) {
  std::atomic<unsigned> next{batch.first}, done{0};
  std::atomic<bool> failed{false};
  std::mutex error_mutex;
  std::string error;
  const std::string alice_key = daemon.operator_key("alice");
  const auto policy = boost::json::parse(test::allow_me_everything());
  std::vector<std::thread> threads;
  for (unsigned t = 0; t < batch.threads; ++t) {
    threads.emplace_back([&, t] {
      client::UnixHttpClient admin(daemon.admin_socket());
      for (unsigned i = next++; i < batch.first + batch.count && !failed; i = next++) {
        const std::string name = batch.name_prefix + std::to_string(i);
        auto ok = one_approval_operation(admin, alice_key, "create-key",
                                         {{"name", name}, {"algorithm", "aes-256-gcm"}, {"policy", policy}});
        for (unsigned v = 1; ok && v < batch.versions; ++v) ok = one_approval_operation(admin, alice_key, "rotate-key", {{"name", name}});
        if (!ok) {
          std::lock_guard lock(error_mutex);
          if (!failed.exchange(true)) error = ok.error();
          return;
        }
        const unsigned n = ++done;
        if (t == 0) progress(n);
      }
    });
  }
  for (auto& th : threads) th.join();
  if (failed) return unexpected(error);
  progress(done);
  return {};
}

}  // namespace custody::bench
