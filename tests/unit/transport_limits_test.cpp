#include <gtest/gtest.h>

#include <map>

#include "daemon/transport/connection_budget.h"
#include "daemon/transport/fair_queue.h"
#include "daemon/transport/tcp_listener.h"
#include "daemon/transport/uid_rate_limiter.h"

using namespace custody::transport;

TEST(FairQueue, EveryUidGetsATurnBeforeAnyoneGetsASecond) {
  FairQueue<int> q;
  int flood[100], a = 1000, b = 2000;
  for (int i = 0; i < 100; ++i) {
    flood[i] = i;
    q.push(7, &flood[i]);
  }
  q.push(8, &a);
  q.push(9, &b);
  // uid 7 queued 100 requests first; 8 and 9 still go second and third.
  EXPECT_EQ(q.pop(), &flood[0]);
  EXPECT_EQ(q.pop(), &a);
  EXPECT_EQ(q.pop(), &b);
  for (int i = 1; i < 100; ++i) EXPECT_EQ(q.pop(), &flood[i]);
  EXPECT_EQ(q.pop(), nullptr);
  EXPECT_TRUE(q.empty());
}

TEST(FairQueue, AUidThatComesBackWaitsBehindTheOthers) {
  FairQueue<int> q;
  int x1 = 1, x2 = 2, y1 = 3;
  q.push(1, &x1);
  q.push(2, &y1);
  EXPECT_EQ(q.pop(), &x1);
  q.push(1, &x2);
  EXPECT_EQ(q.pop(), &y1);
  EXPECT_EQ(q.pop(), &x2);
  EXPECT_EQ(q.size(), 0u);
}

TEST(ConnectionBudget, OneUidCannotTakeEverySlot) {
  ConnectionBudget budget(4, 2);
  EXPECT_EQ(budget.admit(10), ConnectionBudget::Verdict::admitted);
  EXPECT_EQ(budget.admit(10), ConnectionBudget::Verdict::admitted);
  EXPECT_EQ(budget.admit(10), ConnectionBudget::Verdict::uid_full);
  EXPECT_EQ(budget.admit(11), ConnectionBudget::Verdict::admitted);
  EXPECT_EQ(budget.admit(12), ConnectionBudget::Verdict::admitted);
  EXPECT_EQ(budget.admit(13), ConnectionBudget::Verdict::listener_full);
  EXPECT_EQ(budget.open(), 4u);
  budget.release(10);
  EXPECT_EQ(budget.open_for(10), 1u);
  EXPECT_EQ(budget.admit(13), ConnectionBudget::Verdict::admitted);
  // Releasing more than was taken never underflows.
  budget.release(99);
  EXPECT_EQ(budget.open(), 4u);
}

TEST(UidRateLimiter, ABucketPerUidRefillsAtTheRate) {
  using namespace std::chrono;
  UidRateLimiter limiter(10, 5);
  const auto t0 = steady_clock::now();
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(limiter.allow(1, t0));
  EXPECT_FALSE(limiter.allow(1, t0));
  EXPECT_TRUE(limiter.allow(2, t0));  // another uid has its own bucket
  EXPECT_FALSE(limiter.allow(1, t0 + milliseconds(50)));
  EXPECT_TRUE(limiter.allow(1, t0 + milliseconds(100)));  // 10/s: one token per 100 ms
  EXPECT_FALSE(limiter.allow(1, t0 + milliseconds(100)));
  // Never more than the burst, however long the quiet.
  const auto later = t0 + hours(1);
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(limiter.allow(1, later));
  EXPECT_FALSE(limiter.allow(1, later));
}

TEST(UidRateLimiter, ABatchCostsItsItemsAndAHugeOneNeedsAFullBucket) {
  UidRateLimiter limiter(10, 10);
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_TRUE(limiter.allow(1, t0, 8));
  EXPECT_FALSE(limiter.allow(1, t0, 8));  // two left
  EXPECT_FALSE(limiter.allow(1, t0 + std::chrono::milliseconds(500), 256));  // seven: not full
  EXPECT_TRUE(limiter.allow(1, t0 + std::chrono::seconds(2), 256));  // full: passes, and empties it
  EXPECT_FALSE(limiter.allow(1, t0 + std::chrono::seconds(2), 1));
}

TEST(UidRateLimiter, ZeroMeansOff) {
  UidRateLimiter off(0, 0);
  EXPECT_FALSE(off.enabled());
  const auto now = std::chrono::steady_clock::now();
  for (int i = 0; i < 100000; ++i) ASSERT_TRUE(off.allow(1, now));
}

// xks.tls.client_subject names whole RDNs of the client certificate's subject (RFC 2253 text).
TEST(ClientSubject, MatchesWholeRdnsOnlyNeverAPrefixOrAnEscapedComma) {
  using custody::transport::subject_has_rdns;
  const std::string subject = "CN=kms-proxy,O=Example Corp,C=US";
  EXPECT_TRUE(subject_has_rdns(subject, "CN=kms-proxy"));
  EXPECT_TRUE(subject_has_rdns(subject, "O=Example Corp"));
  EXPECT_TRUE(subject_has_rdns(subject, "CN=kms-proxy,O=Example Corp"));
  EXPECT_TRUE(subject_has_rdns(subject, subject));
  EXPECT_FALSE(subject_has_rdns(subject, "CN=kms"));            // a prefix of the value
  EXPECT_FALSE(subject_has_rdns(subject, "proxy,O=Example"));   // starts inside an RDN
  EXPECT_FALSE(subject_has_rdns(subject, "O=Example"));         // ends inside one
  EXPECT_FALSE(subject_has_rdns("CN=kms-proxy-evil,O=Example Corp", "CN=kms-proxy"));
  EXPECT_FALSE(subject_has_rdns("CN=evil\\,CN=kms-proxy", "CN=kms-proxy"));  // an escaped comma is no boundary
  EXPECT_TRUE(subject_has_rdns("CN=a\\\\,CN=kms-proxy", "CN=kms-proxy"));   // an escaped backslash, then a real comma
  EXPECT_FALSE(subject_has_rdns(subject, ""));
  EXPECT_FALSE(subject_has_rdns("", "CN=kms-proxy"));
}
