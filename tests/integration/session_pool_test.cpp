#include <gtest/gtest.h>
#include <openssl/rand.h>

#include "daemon/core/keys/token_key_vault.h"
#include "tests/integration/test_keys.h"

using namespace custody;
using namespace custody::core;

TEST(SessionPool, RecoversWhenTheTokenClosesEverySessionAndLogsOut) {
  auto& token = test::SharedToken::get();
  TokenKeyVault vault(token.pool());
  Bytes value(32, 0x42);
  auto key = test::make_known_key(Algorithm::aes_256_gcm, value, "custody:pool-recovery:v1");
  Bytes iv(12, 1), pt(32, 2);
  ASSERT_TRUE(vault.gcm_encrypt(key, iv, {}, pt));
  // Behind the pool's back: every session closed, which also ends the login.
  ASSERT_EQ(token.module().api()->C_CloseAllSessions(token.pool().slot()), CKR_OK);
  auto again = vault.gcm_encrypt(key, iv, {}, pt);
  ASSERT_TRUE(again) << again.error().message;
  EXPECT_TRUE(vault.available());
}

TEST(SessionPool, LeasesAreBoundedAndReturned) {
  auto& pool = test::SharedToken::get().pool();
  std::vector<p11::SessionPool::Lease> held;
  for (int i = 0; i < 4; ++i) {
    auto lease = pool.acquire(std::chrono::milliseconds(500));
    ASSERT_TRUE(lease) << i;
    held.push_back(std::move(*lease));
  }
  // The pool's capacity is 4: a fifth waits, then times out.
  auto fifth = pool.acquire(std::chrono::milliseconds(100));
  EXPECT_FALSE(fifth);
  held.pop_back();
  EXPECT_TRUE(pool.acquire(std::chrono::milliseconds(100)));
}

TEST(SessionPool, AnAbsentTokenIsAClearStartupError) {
  auto& token = test::SharedToken::get();
  p11::SessionPool missing(token.module(), p11::TokenSelector{std::string("no-such-token"), std::nullopt}, SecureString("x"), 1);
  auto m = missing.start();
  ASSERT_FALSE(m);
  EXPECT_NE(m.error().find("no-such-token"), std::string::npos) << m.error();
  // SoftHSMv2 can show a token another process is writing as a free slot, so there a miss is
  // searched again on a fresh module; on other modules it is final.
  const bool stale_views = token.pool().quirks().store_view_can_go_stale;
  EXPECT_EQ(missing.generation() > 0, stale_views);
}
