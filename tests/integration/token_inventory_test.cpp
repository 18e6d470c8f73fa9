// The token inventory reconciliation reads in one pass: it must count exactly the objects a search
// by CKA_ID or by label would find, on a real SoftHSMv2 token too, so that start-up can skip the
// search per version without missing a copy.
#include <gtest/gtest.h>

#include "daemon/core/keys/token_inventory.h"
#include "daemon/core/keys/token_key_vault.h"
#include "tests/support/softhsm_token.h"

using namespace custody;
using namespace custody::core;

namespace {

Bytes id(std::uint8_t b) { return Bytes(16, b); }

}  // namespace

TEST(TokenInventory, CountsEachObjectCarryingTheIdOrTheLabelOnce) {
  TokenInventory inventory;
  inventory.add(ObjectRef{id(1), "custody:a:v1"}, true);
  inventory.add(ObjectRef{id(1), "copy"}, true);            // same id, other label
  inventory.add(ObjectRef{id(2), "custody:a:v1"}, false);   // same label, other id, not a secret key
  inventory.add(ObjectRef{id(1), "custody:a:v1"}, true);    // both: counted once
  inventory.add(ObjectRef{{}, ""}, true);                   // neither id nor label
  EXPECT_EQ(inventory.carriers(ObjectRef{id(1), "custody:a:v1"}), 4u);
  EXPECT_EQ(inventory.carriers(ObjectRef{id(9), "custody:b:v1"}), 0u);
  // An empty id or label names nothing, not every object that lacks one.
  EXPECT_EQ(inventory.carriers(ObjectRef{{}, ""}), 0u);
  EXPECT_EQ(inventory.carriers(ObjectRef{{}, "copy"}), 1u);
  const auto labelled = inventory.labelled("custody:");
  ASSERT_EQ(labelled.size(), 2u);  // the two secret keys so labelled, not the other object
  EXPECT_EQ(labelled[0].id, id(1));
}

TEST(TokenInventory, AgreesWithASearchOfTheTokenPerObject) {
  auto& pool = test::SharedToken::get().pool();
  TokenKeyVault vault(pool);
  const ObjectRef made{id(0x5a), "custody:inventory-" + std::to_string(::getpid()) + ":v1"};
  ASSERT_TRUE(vault.generate(Algorithm::aes_256_gcm, made));
  auto before = vault.inventory();
  ASSERT_TRUE(before) << before.error().message;
  EXPECT_EQ(before->carriers(made), 1u);
  EXPECT_EQ(before->carriers(made), *vault.carriers(made));
  {
    // A copy under the same id and label, as anyone with the PIN can make.
    auto lease = pool.acquire();
    ASSERT_TRUE(lease);
    p11::AttributeTemplate t;
    t.add_ulong(CKA_CLASS, CKO_SECRET_KEY).add_ulong(CKA_KEY_TYPE, CKK_AES).add_ulong(CKA_VALUE_LEN, 32);
    t.add_bool(CKA_TOKEN, true).add_bool(CKA_PRIVATE, true).add_bool(CKA_ENCRYPT, true);
    t.add_bytes(CKA_ID, made.id).add_string(CKA_LABEL, made.label);
    ASSERT_TRUE(lease->session().generate_key(CKM_AES_KEY_GEN, t));
  }
  auto after = vault.inventory();
  ASSERT_TRUE(after) << after.error().message;
  EXPECT_EQ(after->carriers(made), 2u);
  EXPECT_EQ(after->carriers(made), *vault.carriers(made));
  EXPECT_EQ(after->size(), before->size() + 1);
  // The id is no longer unique, so no handle was remembered for it: using the key refuses.
  std::uint8_t iv[12] = {};
  const std::uint8_t plaintext[1] = {1};
  EXPECT_FALSE(vault.gcm_encrypt(made, iv, {}, plaintext));
  ASSERT_TRUE(vault.destroy(made));
  EXPECT_EQ(vault.inventory()->carriers(made), 0u);
}
