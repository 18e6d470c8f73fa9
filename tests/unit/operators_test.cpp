// Operators' keys are compared as keys: one key pair in any of its PEM encodings (EC point
// compressed, uncompressed or hybrid, curve named or explicit) is one operator, with one key_id,
// so one private key can never meet a quorum of two. Keys and encodings made by the openssl CLI.
#include <gtest/gtest.h>

#include "common/hex.h"
#include "daemon/core/admin/operators.h"
#include "tests/support/softhsm_token.h"

using namespace custody;
using namespace custody::core;
using namespace custody::test;

namespace {

class OperatorKeys : public ::testing::Test {
 protected:
  // Runs `openssl <args>` in the temp dir; fails the test when openssl does.
  void openssl(const std::string& args) {
    ASSERT_EQ(run("cd '" + dir_.path() + "' && openssl " + args + " >/dev/null 2>&1"), 0) << "openssl " << args;
  }
  std::string file(const std::string& name) { return read_file(dir_.path() + "/" + name); }
  // hex SHA-256 of the DER that `openssl pkey -pubin -outform DER` gives for a PEM file.
  std::string der_sha256(const std::string& pem) {
    openssl("pkey -pubin -in " + pem + " -outform DER -out " + pem + ".der");
    return sha256_hex(to_bytes(file(pem + ".der"))).value();
  }
  std::string key_id(const std::string& pem) {
    auto set = OperatorSet::from_pem({{"only", file(pem)}});
    EXPECT_TRUE(set) << set.error();
    return set ? set->all().at(0).key_id : "";
  }

  TempDir dir_;
};

}  // namespace

TEST_F(OperatorKeys, OneEcKeyInAnyEncodingIsOneOperator) {
  openssl("genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out ec.key");
  openssl("pkey -in ec.key -pubout -out plain.pem");
  openssl("pkey -in ec.key -pubout -ec_conv_form compressed -out compressed.pem");
  openssl("pkey -in ec.key -pubout -ec_conv_form hybrid -out hybrid.pem");
  openssl("pkey -in ec.key -pubout -ec_param_enc explicit -out explicit.pem");
  openssl("pkey -in ec.key -pubout -ec_param_enc explicit -ec_conv_form compressed -out explicit-compressed.pem");
  ASSERT_NE(file("plain.pem"), file("compressed.pem"));

  const std::string expected = der_sha256("plain.pem");
  for (const char* other : {"compressed.pem", "hybrid.pem", "explicit.pem", "explicit-compressed.pem"}) {
    SCOPED_TRACE(other);
    EXPECT_EQ(key_id(other), expected);
    auto both = OperatorSet::from_pem({{"alice", file("plain.pem")}, {"mallory", file(other)}});
    ASSERT_FALSE(both) << "one key accepted as two operators";
    EXPECT_NE(both.error().find("'alice'"), std::string::npos) << both.error();
    EXPECT_NE(both.error().find("'mallory'"), std::string::npos) << both.error();
    EXPECT_NE(both.error().find("share a key"), std::string::npos) << both.error();
  }
  EXPECT_EQ(key_id("plain.pem"), expected);
}

TEST_F(OperatorKeys, AnRsaKeyListedTwiceIsRefused) {
  openssl("genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out rsa.key");
  openssl("pkey -in rsa.key -pubout -out rsa.pem");
  auto both = OperatorSet::from_pem({{"carol", file("rsa.pem")}, {"dave", file("rsa.pem")}});
  ASSERT_FALSE(both);
  EXPECT_NE(both.error().find("'carol' and 'dave' share a key"), std::string::npos) << both.error();
  EXPECT_EQ(key_id("rsa.pem"), der_sha256("rsa.pem"));
}

TEST_F(OperatorKeys, DistinctKeysAreDistinctOperatorsAndStillVerify) {
  openssl("genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out a.key");
  openssl("genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out b.key");
  openssl("pkey -in a.key -pubout -ec_conv_form compressed -out a.pem");
  openssl("pkey -in b.key -pubout -out b.pem");
  auto set = OperatorSet::from_pem({{"a", file("a.pem")}, {"b", file("b.pem")}});
  ASSERT_TRUE(set) << set.error();
  ASSERT_EQ(set->all().size(), 2u);
  EXPECT_NE(set->all()[0].key_id, set->all()[1].key_id);

  // A signature by a's private key verifies against the key read from its compressed PEM.
  write_file(dir_.path() + "/challenge", "the challenge");
  openssl("dgst -sha256 -sign a.key -out a.sig challenge");
  const Bytes sig = to_bytes(file("a.sig"));
  EXPECT_TRUE(OperatorSet::verify(*set->find("a"), "the challenge", sig));
  auto wrong = OperatorSet::verify(*set->find("b"), "the challenge", sig);
  ASSERT_FALSE(wrong);
  EXPECT_EQ(wrong.error().code, Code::permission_denied);
}
