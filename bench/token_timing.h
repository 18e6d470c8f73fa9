#pragma once
// In-process PKCS#11 on the token under test: open it, make the run's keys, and time one call
// in a loop on one or more threads (one session per thread).
#include <atomic>
#include <barrier>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "bench/report.h"
#include "common/expected.h"
#include "pkcs11/module.h"
#include "pkcs11/session.h"

namespace custody::bench {

struct OpenToken {
  std::unique_ptr<p11::Module> module;
  CK_SLOT_ID slot = 0;
  std::optional<p11::Session> session;  // logged in as the user
};

// Loads the module (the environment must already name the token, e.g. SOFTHSM2_CONF), finds the
// token by label and logs in on one session.
Expected<OpenToken, std::string> open_token(const std::string& module_path, const std::string& label,
                                            const std::string& pin);

enum class BenchKeyKind { aes_256_gcm, hmac_sha256 };

// A token object with custody's own template for that kind (non-extractable, sensitive, one role).
Expected<CK_OBJECT_HANDLE, std::string> make_token_key(p11::Session& session, BenchKeyKind kind, const std::string& label);

// Runs call(session) on `threads` threads, each on its own session, for `seconds`, after one
// untimed call each. call returns the CK_RV of the operation.
// One HMAC-SHA256 of a short message with key, as a call for time_token_calls: what derive asks
// of the token per 32 bytes of output.
inline auto hmac_call(CK_FUNCTION_LIST* api, CK_OBJECT_HANDLE key) {
  return [api, key](CK_SESSION_HANDLE s) -> CK_RV {
    static const CK_BYTE message[] = "custody-bench: a short derive info";
    CK_MECHANISM m{CKM_SHA256_HMAC, nullptr, 0};
    if (CK_RV rv = api->C_SignInit(s, &m, key); rv != CKR_OK) return rv;
    CK_BYTE mac[32];
    CK_ULONG mac_len = sizeof mac;
    return api->C_Sign(s, const_cast<CK_BYTE*>(message), sizeof message - 1, mac, &mac_len);
  };
}

template <class Call>
Row time_token_calls(const OpenToken& token, unsigned threads, double seconds, std::string section, std::string name,
                     Call call) {
  using Clock = std::chrono::steady_clock;
  struct Tally {
    std::vector<double> latencies_us;
    std::uint64_t errors = 0;
    CK_RV first_error = CKR_OK;
    std::string open_error;
  };
  std::vector<Tally> tallies(threads);
  std::atomic<Clock::rep> start_ticks{0};
  const auto duration = std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
  std::barrier ready(static_cast<std::ptrdiff_t>(threads),
                     [&]() noexcept { start_ticks = Clock::now().time_since_epoch().count(); });
  std::vector<std::thread> workers;
  for (unsigned t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      Tally& tally = tallies[t];
      auto session = p11::Session::open(token.module->api(), token.slot);
      if (!session) tally.open_error = session.error().describe();
      else if (call(session->handle()) != CKR_OK) ++tally.errors;
      ready.arrive_and_wait();
      if (!session) return;
      tally.latencies_us.reserve(1 << 18);
      const Clock::time_point deadline = Clock::time_point(Clock::duration(start_ticks.load())) + duration;
      for (Clock::time_point now = Clock::now(); now < deadline;) {
        const CK_RV rv = call(session->handle());
        const Clock::time_point done = Clock::now();
        if (rv != CKR_OK) {
          if (tally.errors++ == 0) tally.first_error = rv;
        } else if (done <= deadline) {
          tally.latencies_us.push_back(std::chrono::duration<double, std::micro>(done - now).count());
        }
        now = done;
      }
    });
  }
  for (auto& w : workers) w.join();
  Row row{std::move(section), std::move(name)};
  std::vector<double> all;
  for (auto& t : tallies) {
    all.insert(all.end(), t.latencies_us.begin(), t.latencies_us.end());
    row.errors += t.errors + (t.open_error.empty() ? 0 : 1);
    if (row.note.empty() && !t.open_error.empty()) row.note = "C_OpenSession: " + t.open_error;
    if (row.note.empty() && t.first_error != CKR_OK) row.note = std::string("first error: ") + p11::rv_name(t.first_error);
  }
  row.ops_per_second = static_cast<double>(all.size()) / seconds;
  row.latency = summarize(all);
  if (threads > 1) row.note += (row.note.empty() ? "" : "; ") + std::to_string(threads) + " threads";
  return row;
}

}  // namespace custody::bench
