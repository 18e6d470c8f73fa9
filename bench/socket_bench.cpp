// custody_bench: data-plane throughput and latency over the service socket, as a local service
// sees it. Each connection sends one request at a time (keep-alive) for the given time.
//   custody_bench --socket "$CUSTODY_SERVICE_SOCKET" --key demo --op unwrap --connections 16 --seconds 5
#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <boost/json.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>
#include <vector>

#include "cli/unix_http_client.h"

int main(int argc, char** argv) {
  CLI::App app{"custody_bench: throughput and latency of the data plane over the service socket"};
  const char* env = std::getenv("CUSTODY_SERVICE_SOCKET");
  std::string socket = env ? env : "/run/custody/service.sock";
  std::string key = "demo", op = "unwrap";
  unsigned connections = 1, seconds = 5, batch = 0;
  app.add_option("--socket", socket)->capture_default_str();
  app.add_option("--key", key)->capture_default_str();
  app.add_option("--op", op, "wrap or unwrap")->capture_default_str();
  app.add_option("--connections", connections)->capture_default_str();
  app.add_option("--seconds", seconds)->capture_default_str();
  app.add_option("--batch", batch, "items per request (0: single requests)")->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  custody::client::UnixHttpClient setup(socket);
  auto wrapped = setup.call("POST", "/v1/keys/" + key + "/wrap", R"({"plaintext":"MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="})");
  if (!wrapped || wrapped->status != 200) {
    std::fprintf(stderr, "cannot wrap with key %s: %s\n", key.c_str(), wrapped ? wrapped->body.c_str() : wrapped.error().c_str());
    return 1;
  }
  const auto ciphertext = std::string(boost::json::parse(wrapped->body).at("ciphertext").as_string());
  std::string item = op == "wrap" ? R"({"plaintext":"MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="})"
                                  : "{\"ciphertext\":\"" + ciphertext + "\"}";
  std::string body = item;
  if (batch > 0) {
    body = "{\"batch\":[";
    for (unsigned i = 0; i < batch; ++i) body += (i ? "," : "") + item;
    body += "]}";
  }
  const std::string target = "/v1/keys/" + key + "/" + op;
  std::atomic<bool> stop{false};
  std::atomic<unsigned long> errors{0};
  std::vector<std::vector<double>> latencies(connections);
  std::vector<std::thread> threads;
  const auto start = std::chrono::steady_clock::now();
  for (unsigned c = 0; c < connections; ++c) {
    threads.emplace_back([&, c] {
      custody::client::UnixHttpClient client(socket);
      latencies[c].reserve(1 << 20);
      while (!stop.load(std::memory_order_relaxed)) {
        const auto t0 = std::chrono::steady_clock::now();
        auto r = client.call("POST", target, body);
        const auto t1 = std::chrono::steady_clock::now();
        if (!r || r->status != 200) {
          errors++;
          continue;
        }
        latencies[c].push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
      }
    });
  }
  std::this_thread::sleep_for(std::chrono::seconds(seconds));
  stop = true;
  for (auto& t : threads) t.join();
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::vector<double> all;
  for (auto& l : latencies) all.insert(all.end(), l.begin(), l.end());
  std::sort(all.begin(), all.end());
  if (all.empty()) {
    std::fprintf(stderr, "no request succeeded (%lu errors)\n", errors.load());
    return 1;
  }
  auto pct = [&](double p) { return all[std::min(all.size() - 1, static_cast<std::size_t>(p * all.size()))]; };
  const double items = static_cast<double>(all.size()) * (batch ? batch : 1);
  std::printf("%s key=%s connections=%u batch=%u seconds=%.1f\n", op.c_str(), key.c_str(), connections, batch, elapsed);
  std::printf("requests/s %.0f  items/s %.0f  p50 %.0f us  p99 %.0f us  max %.0f us  errors %lu\n",
              static_cast<double>(all.size()) / elapsed, items / elapsed, pct(0.50), pct(0.99), all.back(), errors.load());
  return 0;
}
