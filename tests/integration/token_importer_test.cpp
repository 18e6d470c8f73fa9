// Import job keys in a real token: unwrap only, and (where the token supports it) pinned by
// CKA_UNWRAP_TEMPLATE to the ephemeral session key the composed unwrap makes.
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>

#include "daemon/core/import/token_importer.h"
#include "daemon/core/keys/token_key_vault.h"
#include "tests/support/softhsm_token.h"

using namespace custody;
using namespace custody::core;

namespace {

// The BYOK payload of CONTRACT §8 made with OpenSSL: RSA-OAEP(E) || AES-KWP(E, K).
Bytes byok_payload(const std::string& job_pem, const ImportMethod& method, const Bytes& k) {
  Bytes e(32);
  EXPECT_EQ(RAND_bytes(e.data(), 32), 1);
  BIO* bio = BIO_new_mem_buf(job_pem.data(), static_cast<int>(job_pem.size()));
  EVP_PKEY* pub = PEM_read_bio_PUBKEY(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  EVP_PKEY_CTX* ctx = EVP_PKEY_CTX_new(pub, nullptr);
  const EVP_MD* md = method.oaep_hash == CKM_SHA256 ? EVP_sha256() : EVP_sha1();
  std::size_t len = 0;
  bool ok = ctx && EVP_PKEY_encrypt_init(ctx) == 1 && EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_OAEP_PADDING) == 1 &&
            EVP_PKEY_CTX_set_rsa_oaep_md(ctx, md) == 1 && EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, md) == 1 &&
            EVP_PKEY_encrypt(ctx, nullptr, &len, e.data(), e.size()) == 1;
  Bytes out(len);
  ok = ok && EVP_PKEY_encrypt(ctx, out.data(), &len, e.data(), e.size()) == 1;
  EVP_PKEY_CTX_free(ctx);
  EVP_PKEY_free(pub);
  out.resize(len);
  EVP_CIPHER_CTX* c = EVP_CIPHER_CTX_new();
  Bytes wrapped(k.size() + 16);
  int n = 0, tail = 0;
  ok = ok && c && EVP_EncryptInit_ex(c, EVP_aes_256_wrap_pad(), nullptr, e.data(), nullptr) == 1 &&
       EVP_EncryptUpdate(c, wrapped.data(), &n, k.data(), static_cast<int>(k.size())) == 1 &&
       EVP_EncryptFinal_ex(c, wrapped.data() + n, &tail) == 1;
  EVP_CIPHER_CTX_free(c);
  EXPECT_TRUE(ok) << "OpenSSL could not make the payload";
  wrapped.resize(static_cast<std::size_t>(n + tail));
  out.insert(out.end(), wrapped.begin(), wrapped.end());
  return out;
}

// C_CopyObject: a second token object holding the same key, under another label. PKCS#11 2.40
// answers CKR_ACTION_PROHIBITED for an object with CKA_COPYABLE false. A copy that was made is
// destroyed again.
CK_RV try_to_copy(p11::SessionPool& pool, CK_OBJECT_CLASS cls, const Bytes& id) {
  auto lease = pool.acquire();
  EXPECT_TRUE(lease);
  if (!lease) return CKR_GENERAL_ERROR;
  auto& s = lease->session();
  p11::AttributeTemplate t;
  t.add_ulong(CKA_CLASS, cls).add_bytes(CKA_ID, id);
  auto found = s.find_objects(t, 2);
  EXPECT_TRUE(found && found->size() == 1);
  if (!found || found->size() != 1) return CKR_GENERAL_ERROR;
  p11::AttributeTemplate relabel;
  relabel.add_string(CKA_LABEL, "custody:copy-attempt");
  auto copy = s.copy_object((*found)[0], relabel);
  if (!copy) return copy.error().rv;
  EXPECT_TRUE(s.destroy_object(*copy));
  return CKR_OK;
}

}  // namespace

TEST(TokenImporter, ImportedKeysAndJobKeysAreUncopyableAndTheTokenRefusesACopy) {
  auto& pool = test::SharedToken::get().pool();
  TokenImporter importer(pool);
  const auto offered = importer.offered_methods();
  ASSERT_FALSE(offered.empty());
  const ImportMethod* method = find_import_method(offered.front());
  ASSERT_TRUE(method && method->rsa) << offered.front();
  ObjectRef job{Bytes(16), "custody-import:nocopy"};
  ObjectRef target{Bytes(16), "custody:imported-nocopy:v1"};
  RAND_bytes(job.id.data(), 16);
  RAND_bytes(target.id.data(), 16);
  auto pem = importer.make_wrapping_pair(*method, job);
  ASSERT_TRUE(pem) << pem.error().message;
  auto job_attributes = importer.wrapping_key_attributes(job);
  ASSERT_TRUE(job_attributes);
  EXPECT_EQ((*job_attributes)["copyable"], std::optional<bool>(false));
  EXPECT_EQ(try_to_copy(pool, CKO_PRIVATE_KEY, job.id), CKR_ACTION_PROHIBITED);

  Bytes k(32);
  RAND_bytes(k.data(), 32);
  auto imported = importer.import_rsa(*method, job, byok_payload(*pem, *method, k), Algorithm::aes_256_gcm, target);
  ASSERT_TRUE(imported) << imported.error().message;
  TokenKeyVault vault(pool);
  auto a = vault.attributes(target);
  ASSERT_TRUE(a);
  EXPECT_EQ((*a)["copyable"], std::optional<bool>(false));
  EXPECT_TRUE(vault.verify(Algorithm::aes_256_gcm, target, false));
  EXPECT_EQ(try_to_copy(pool, CKO_SECRET_KEY, target.id), CKR_ACTION_PROHIBITED);
  // The KCV still comes out of the token without a copy.
  auto kcv = importer.kcv(Algorithm::aes_256_gcm, target);
  ASSERT_TRUE(kcv) << kcv.error().message;
  EXPECT_EQ(kcv->value_or("").size(), 6u);
  ASSERT_TRUE(importer.destroy(target));
  ASSERT_TRUE(importer.destroy_wrapping_pair(job));
}

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
