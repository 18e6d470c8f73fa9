// Import job keys in a real token: unwrap only, and (where the token supports it) pinned by
// CKA_UNWRAP_TEMPLATE to the ephemeral session key the composed unwrap makes.
#include <gtest/gtest.h>
#include <openssl/rand.h>

#include "daemon/core/token_importer.h"
#include "tests/support/softhsm_token.h"

using namespace custody;
using namespace custody::core;

TEST(TokenImporter, JobKeysCanOnlyUnwrapAndPinWhatTheyUnwrapTo) {
  auto& pool = test::SharedToken::get().pool();
  TokenImporter importer(pool);
  const auto offered = importer.offered_methods();
  ASSERT_FALSE(offered.empty());
  const ImportMethod* method = find_import_method(offered.front());
  ASSERT_TRUE(method && method->rsa) << offered.front();
  ObjectRef ref{Bytes(16), "custody-import:test"};
  RAND_bytes(ref.id.data(), 16);
  auto pem = importer.make_wrapping_pair(*method, ref);
  ASSERT_TRUE(pem) << pem.error().message;
  EXPECT_NE(pem->find("BEGIN PUBLIC KEY"), std::string::npos);

  auto a = importer.wrapping_key_attributes(ref);
  ASSERT_TRUE(a);
  EXPECT_EQ((*a)["unwrap"], true);
  EXPECT_EQ((*a)["decrypt"], false);
  EXPECT_EQ((*a)["sign"], false);
  EXPECT_EQ((*a)["derive"], false);
  EXPECT_EQ((*a)["sensitive"], true);
  EXPECT_EQ((*a)["extractable"], false);

  auto lease = pool.acquire();
  ASSERT_TRUE(lease);
  p11::AttributeTemplate find;
  find.add_ulong(CKA_CLASS, CKO_PRIVATE_KEY).add_bytes(CKA_ID, ref.id);
  auto found = lease->session().find_objects(find, 1);
  ASSERT_TRUE(found && found->size() == 1);
  auto pinned = lease->session().get_bytes((*found)[0], CKA_UNWRAP_TEMPLATE);
  ASSERT_TRUE(pinned);
  if (*pinned) {
    RecordProperty("unwrap_template", "set");
    EXPECT_EQ((*pinned)->size(), 13 * sizeof(CK_ATTRIBUTE));  // the thirteen attributes of E
  } else {
    RecordProperty("unwrap_template", "not supported by this token");
  }
  ASSERT_TRUE(importer.destroy_wrapping_pair(ref));
  EXPECT_FALSE(importer.wrapping_key_attributes(ref));
}
