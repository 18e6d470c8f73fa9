// Issue #9 finding 7 and the limits around it: one uid's flood of huge batches does not push
// another uid's p99 past the bound (fair turns across uids); a request that waited in the queue
// longer than limits.request_timeout is 503 without running; requests over limits.max_in_flight
// and over a uid's rate are 429 with Retry-After.
#include <gtest/gtest.h>

#include <set>
#include <thread>

#include "tests/hostile/hostile_support.h"

using namespace custody;
using namespace custody::hostile;
using namespace custody::test;

namespace {

constexpr uid_t kFlooder = 65534;

// The heaviest request the contract allows: 256 derives of 1024 bytes each.
std::string heavy_batch() {
  std::string items;
  for (int i = 0; i < 256; ++i) items += std::string(i ? "," : "") + R"({"info":"aGVhdnk=","length":1024})";
  return R"({"batch":[)" + items + "]}";
}

std::string heavy_request(const std::string& request_id = "") {
  std::vector<std::string> headers;
  if (!request_id.empty()) headers.push_back("X-Request-Id: " + request_id);
  return http_request("POST", "/v1/keys/hk/derive", heavy_batch(), headers);
}

// A daemon with "demo" (aes-256-gcm) for the test process and "hk" (hmac-sha256) that both the
// test process and kFlooder may derive from.
std::unique_ptr<Daemon> start_daemon(const std::string& extra_limits, const std::string& token_workers = "auto") {
  DaemonOptions o;
  o.service_group = "nogroup";
  o.extra_limits = extra_limits;
  o.token_workers = token_workers;
  auto d = std::make_unique<Daemon>(o);
  const std::vector<std::string> all = {"wrap", "unwrap", "datakey", "rewrap", "derive"};
  EXPECT_EQ(d->create_key("demo", "aes-256-gcm", policy({{::getuid(), all}, {kFlooder, {"wrap"}}})), 201);
  EXPECT_EQ(d->create_key("hk", "hmac-sha256", policy({{::getuid(), {"derive"}}, {kFlooder, {"derive"}}})), 201);
  open_daemon_dir_to_others(*d);
  return d;
}

// Reads one answer on each connection at once: a heavy batch's answer (~350 KB) is more than a
// socket buffer holds, and the daemon gives up on a client that does not read its answer.
std::vector<RawResponse> read_all(std::vector<std::unique_ptr<RawConnection>>& conns) {
  std::vector<RawResponse> out(conns.size());
  std::vector<std::thread> readers;
  for (std::size_t i = 0; i < conns.size(); ++i)
    readers.emplace_back([&, i] { out[i] = conns[i]->read_response(30s); });
  for (auto& t : readers) t.join();
  return out;
}

void expect_flood_of_huge_batches_leaves_another_uids_p99_under_the_bound(const std::string& token_workers) {
  auto d = start_daemon("", token_workers);
  const std::string socket = d->service_socket();
  // What one heavy batch costs alone. Batches run on the worker pool, single requests on the I/O
  // thread (token.workers auto on SoftHSMv2), so our wraps need not wait for a batch at all. Were
  // they to share the pool (token.workers 1), turns go round robin by uid, so a request of ours
  // arriving while a batch runs waits for that batch and at most one more. The bound holds for
  // both: those two batches with half as much again for a loaded CI machine, plus p99_bound().
  // First in, first out across the flood's eight connections (finding 7: p99 4.6 s) waits for up
  // to eight.
  std::chrono::milliseconds heavy{0};
  {
    RawConnection c(socket);
    for (int i = 0; i < 2; ++i) {
      const auto start = std::chrono::steady_clock::now();
      ASSERT_TRUE(c.send(heavy_request()));
      ASSERT_EQ(c.read_response(30s).status, 200);
      heavy = std::max(heavy, std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start));
    }
  }
  const auto bound = 3 * heavy + p99_bound();
  // Eight connections of one uid, each sending the heaviest batch again as soon as it is answered.
  std::vector<std::unique_ptr<AsUid>> flood;
  for (int i = 0; i < 8; ++i) {
    flood.push_back(std::make_unique<AsUid>(kFlooder, [socket](ChildControl& control) {
      RawConnection c(socket);
      const std::string request = heavy_request();
      control.ready();
      while (c.send(request) && c.read_response(30s).status != 0) {
      }
      return std::string();
    }));
  }
  for (auto& f : flood) ASSERT_TRUE(f->wait_ready()) << f->result();
  // Measured for long enough for the flood to get several batches done meanwhile, and for at
  // least 8 of our requests (with one shared worker each may wait for two batches: seconds under
  // a sanitizer), within a hard stop.
  const auto start = std::chrono::steady_clock::now();
  const auto until = start + std::max<std::chrono::milliseconds>(3s, heavy * 6);
  const auto hard_stop = start + std::max<std::chrono::milliseconds>(60s, heavy * 40);
  int started = 0;
  auto latencies = measure_wraps_while(socket, 1'000'000, [&] {
    const auto now = std::chrono::steady_clock::now();
    return now < hard_stop && (now < until || started++ < 8);
  });
  flood.clear();  // killed: waiting for their last batches would only make the test longer
  std::size_t flood_items = 0;
  for (const auto& rec : audit_records_so_far(*d))
    if (rec.at("client").at("uid").as_int64() == kFlooder && rec.at("result").as_string() == "ok") ++flood_items;
  EXPECT_GE(flood_items, 256u) << "the flood got no heavy batch done";
  SCOPED_TRACE("one heavy batch alone: " + std::to_string(heavy.count()) + " ms");
  expect_p99_within_bound(latencies, "eight connections of uid 65534 sending 256 x 1024-byte derives", bound, 5);
  expect_alive_and_serving(*d);
  expect_audit_chain_verifies(*d);
}

}  // namespace

TEST(Load, OneUidsFloodOfHugeBatchesLeavesAnotherUidsP99UnderTheBound) {
  if (::getuid() != 0) GTEST_SKIP() << "needs root to act as another uid";
  expect_flood_of_huge_batches_leaves_another_uids_p99_under_the_bound("auto");  // single requests inline
}

TEST(Load, OneUidsFloodOfHugeBatchesLeavesAnotherUidsP99UnderTheBoundWhenAllShareOneWorker) {
  if (::getuid() != 0) GTEST_SKIP() << "needs root to act as another uid";
  expect_flood_of_huge_batches_leaves_another_uids_p99_under_the_bound("1");
}

TEST(Load, ARequestQueuedLongerThanTheRequestTimeoutIs503WithoutRunning) {
  auto d = start_daemon("  request_timeout: 500ms\n");
  // Eight heavy batches (a few hundred ms each) queued at once: the last ones wait past 500 ms.
  constexpr int kConnections = 8;
  std::vector<std::unique_ptr<RawConnection>> conns;
  for (int i = 0; i < kConnections; ++i) conns.push_back(std::make_unique<RawConnection>(d->service_socket()));
  for (int i = 0; i < kConnections; ++i) ASSERT_TRUE(conns[i]->send(heavy_request("queued-" + std::to_string(i))));
  std::set<std::string> refused;
  int ok = 0;
  const auto answers = read_all(conns);
  for (int i = 0; i < kConnections; ++i) {
    SCOPED_TRACE("queued-" + std::to_string(i));
    const auto& r = answers[static_cast<std::size_t>(i)];
    if (r.status == 200) {
      ++ok;
      continue;
    }
    expect_contract_error(r, 503, "unavailable");
    refused.insert(r.header("x-request-id"));
  }
  EXPECT_GT(ok, 0);
  ASSERT_FALSE(refused.empty()) << kConnections << " heavy batches queued together and none waited past request_timeout";
  // Those refused never ran: no derive of theirs is in the audit log.
  for (const auto& rec : audit_records_so_far(*d)) {
    const auto* rid = rec.if_contains("request_id");
    if (!rid || !rid->is_string() || !refused.count(std::string(rid->as_string()))) continue;
    EXPECT_NE(rec.at("result").as_string(), "ok") << "request " << rid->as_string() << " ran after its 503";
  }
  expect_alive_and_serving(*d);
  expect_audit_chain_verifies(*d);
}

TEST(Load, RequestsOverMaxInFlightAre429) {
  auto d = start_daemon("  max_in_flight: 2\n");
  constexpr int kConnections = 8;
  std::vector<std::unique_ptr<RawConnection>> conns;
  for (int i = 0; i < kConnections; ++i) conns.push_back(std::make_unique<RawConnection>(d->service_socket()));
  for (auto& c : conns) ASSERT_TRUE(c->send(heavy_request()));
  int ok = 0, refused = 0;
  for (const auto& r : read_all(conns)) {
    if (r.status == 200) {
      ++ok;
    } else {
      ++refused;
      expect_contract_error(r, 429, "resource_exhausted");
    }
  }
  EXPECT_GE(ok, 1);
  EXPECT_GE(refused, kConnections / 2) << ok << " of " << kConnections << " heavy batches were let in at max_in_flight 2";
  expect_alive_and_serving(*d);
  expect_audit_chain_verifies(*d);
}

TEST(Load, AUidOverItsRateGets429WhileOtherUidsAreServed) {
  if (::getuid() != 0) GTEST_SKIP() << "needs root to act as another uid";
  auto d = start_daemon("  uid_requests_per_second: 20\n  uid_burst: 10\n");
  const std::string socket = d->service_socket();
  // Making the keys went through the admin socket, which the rate does not limit; the service
  // calls that followed may have used some tokens: wait for a full bucket (10 tokens at 20/s).
  std::this_thread::sleep_for(600ms);
  const std::string wrap = http_request("POST", "/v1/keys/demo/wrap", R"({"plaintext":"aGk="})");
  // 15 requests arriving together, one per connection (a connection's next request is read only
  // after its answer, and each answer waits for its audit record's sync).
  std::vector<std::unique_ptr<RawConnection>> conns;
  for (int i = 0; i < 15; ++i) conns.push_back(std::make_unique<RawConnection>(socket));
  for (auto& c : conns) ASSERT_TRUE(c->send(wrap));
  int ok = 0, limited = 0;
  for (auto& c : conns) {
    auto r = c->read_response();
    if (r.status == 200) {
      ++ok;
    } else {
      ++limited;
      expect_contract_error(r, 429, "resource_exhausted");
    }
  }
  conns.clear();
  EXPECT_GE(ok, 10) << "the burst of 10 was not allowed";
  EXPECT_LE(ok, 11) << "15 requests at once passed a rate of 20/s with a burst of 10";
  EXPECT_GE(limited, 4);
  // The same uid's operator calls still go through: the rate limits services, not the admin socket.
  auto admin = d->admin().call("GET", "/v1/admin/requests");
  ASSERT_TRUE(admin);
  EXPECT_EQ(admin->status, 200) << admin->body;
  // Another uid has its own bucket.
  AsUid other(kFlooder, [socket, wrap](ChildControl&) {
    RawConnection c(socket);
    int ok = 0;
    for (int i = 0; i < 5; ++i)
      if (c.send(wrap) && c.read_response().status == 200) ++ok;
    return std::to_string(ok);
  });
  EXPECT_EQ(other.result(), "5");
  // Batch items count one each: with the bucket full again (10 tokens after half a second at
  // 20/s; the wait is the rate itself), a batch of 8 passes and a second one right after does not.
  std::this_thread::sleep_for(600ms);
  std::string items;
  for (int i = 0; i < 8; ++i) items += std::string(i ? "," : "") + R"({"plaintext":"aGk="})";
  const std::string batch = http_request("POST", "/v1/keys/demo/wrap", R"({"batch":[)" + items + "]}");
  RawConnection c(socket);
  ASSERT_TRUE(c.send(batch));
  EXPECT_EQ(c.read_response().status, 200);
  ASSERT_TRUE(c.send(batch));
  expect_contract_error(c.read_response(), 429, "resource_exhausted");
  // The bucket refills: the daemon serves this uid again.
  int status = 0;
  for (auto deadline = std::chrono::steady_clock::now() + 5s; std::chrono::steady_clock::now() < deadline && status != 200;) {
    if (!c.send(wrap)) break;
    status = c.read_response().status;
    if (status != 200) std::this_thread::sleep_for(50ms);
  }
  EXPECT_EQ(status, 200);
  std::this_thread::sleep_for(600ms);  // a full bucket for the checks below, which send requests too
  expect_alive_and_serving(*d);
  expect_audit_chain_verifies(*d);
}
