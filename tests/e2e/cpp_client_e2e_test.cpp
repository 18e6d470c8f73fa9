// custody::client against a real custodyd on a fresh SoftHSMv2 token: every service operation,
// typed errors with the contract's fields, attestation pinned to the daemon's key, and the
// envelope example program encrypting and decrypting a file.
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include <fstream>

#include "custody/client.h"
#include "tests/support/daemon_process.h"

using namespace custody;
using namespace custody::client;
using namespace custody::test;

namespace {

class CppClientE2E : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    daemon_ = new Daemon();
    ASSERT_EQ(daemon_->create_key("demo", "aes-256-gcm", allow_me_everything()), 201);
    ASSERT_EQ(daemon_->create_key("demo-derive", "hmac-sha256", allow_me_everything()), 201);
    ASSERT_EQ(daemon_->create_key("not-mine", "aes-256-gcm", R"([{"uid":4242,"operations":["wrap"]}])"), 201);
  }
  static void TearDownTestSuite() {
    delete daemon_;
    daemon_ = nullptr;
  }
  Client client() {
    ClientOptions o;
    o.socket_path = daemon_->service_socket();
    o.timeout = std::chrono::seconds(10);
    return Client(o);
  }
  static Daemon* daemon_;
};
Daemon* CppClientE2E::daemon_ = nullptr;

Bytes bytes(std::string_view s) { return Bytes(s.begin(), s.end()); }
std::string text(const SecureBytes& b) { return std::string(b.begin(), b.end()); }

// A P-256 public key that is not the daemon's.
std::string stranger_public_key() {
  EVP_PKEY* key = EVP_EC_gen("P-256");
  BIO* bio = BIO_new(BIO_s_mem());
  std::string pem;
  if (key && bio && PEM_write_bio_PUBKEY(bio, key) == 1) {
    char* data = nullptr;
    long n = BIO_get_mem_data(bio, &data);
    pem.assign(data, static_cast<std::size_t>(n));
  }
  BIO_free(bio);
  EVP_PKEY_free(key);
  return pem;
}

}  // namespace

TEST_F(CppClientE2E, WrapUnwrapRoundTripsUnderItsContextAndAWrongContextIsInvalidCiphertext) {
  auto c = client();
  const Context ctx{{"tenant", "t1"}};
  auto wrapped = c.wrap("demo", bytes("hello"), ctx);
  ASSERT_TRUE(wrapped) << wrapped.error().describe();
  EXPECT_EQ(wrapped->key_version, 1u);
  auto opened = c.unwrap("demo", wrapped->ciphertext, ctx);
  ASSERT_TRUE(opened) << opened.error().describe();
  EXPECT_EQ(text(opened->plaintext), "hello");
  auto wrong = c.unwrap("demo", wrapped->ciphertext, {{"tenant", "t2"}});
  ASSERT_FALSE(wrong);
  EXPECT_EQ(wrong.error().code, ErrorCode::invalid_ciphertext);
  EXPECT_EQ(wrong.error().http_status, 400);
  EXPECT_FALSE(wrong.error().request_id.empty());
  EXPECT_FALSE(wrong.error().retryable());
}

TEST_F(CppClientE2E, DatakeyGivesAKeyItsCiphertextUnwrapsToAndCanOmitThePlaintext) {
  auto c = client();
  auto dk = c.datakey("demo", 48, {{"file", "a"}});
  ASSERT_TRUE(dk) << dk.error().describe();
  EXPECT_EQ(dk->plaintext.size(), 48u);
  auto opened = c.unwrap("demo", dk->ciphertext, {{"file", "a"}});
  ASSERT_TRUE(opened);
  EXPECT_EQ(opened->plaintext, dk->plaintext);
  auto sealed_only = c.datakey("demo", 32, {}, false);
  ASSERT_TRUE(sealed_only);
  EXPECT_TRUE(sealed_only->plaintext.empty());
  EXPECT_FALSE(sealed_only->ciphertext.empty());
}

TEST_F(CppClientE2E, RewrapMovesACiphertextToTheCurrentVersionAfterRotation) {
  ASSERT_EQ(daemon_->create_key("rotating", "aes-256-gcm", allow_me_everything()), 201);
  auto c = client();
  auto old_blob = c.wrap("rotating", bytes("v1 data"));
  ASSERT_TRUE(old_blob);
  ASSERT_EQ(daemon_->admin_operation("rotate-key", {{"name", "rotating"}}).first, 201);
  auto moved = c.rewrap("rotating", old_blob->ciphertext);
  ASSERT_TRUE(moved) << moved.error().describe();
  EXPECT_EQ(moved->key_version, 2u);
  for (const auto& blob : {old_blob->ciphertext, moved->ciphertext}) EXPECT_EQ(text(c.unwrap("rotating", blob)->plaintext), "v1 data");
  auto info = c.key("rotating");
  ASSERT_TRUE(info) << info.error().describe();
  EXPECT_EQ(info->current_version, 2u);
  ASSERT_EQ(info->versions.size(), 2u);
  EXPECT_EQ(info->versions[1].version, 2u);
  EXPECT_EQ(info->versions[1].origin, "generated");
}

TEST_F(CppClientE2E, DeriveIsDeterministicPerInfoAndHasTheAskedLength) {
  auto c = client();
  auto a = c.derive("demo-derive", bytes("tenant-1"), 32);
  auto b = c.derive("demo-derive", bytes("tenant-1"), 32);
  auto other = c.derive("demo-derive", bytes("tenant-2"), 64);
  ASSERT_TRUE(a && b && other);
  EXPECT_EQ(a->key, b->key);
  EXPECT_EQ(a->key.size(), 32u);
  EXPECT_EQ(other->key.size(), 64u);
  EXPECT_NE(SecureBytes(other->key.begin(), other->key.begin() + 32), a->key);
}

TEST_F(CppClientE2E, BatchesAnswerItemByItemWithTheirOwnErrors) {
  auto c = client();
  const Bytes one = bytes("one"), two = bytes("two");
  const WrapItem wraps[] = {{one, {{"k", "1"}}}, {two, {}}};
  auto wrapped = c.wrap_batch("demo", wraps);
  ASSERT_TRUE(wrapped) << wrapped.error().describe();
  ASSERT_EQ(wrapped->size(), 2u);
  ASSERT_TRUE((*wrapped)[0] && (*wrapped)[1]);
  const UnwrapItem unwraps[] = {{(*wrapped)[0]->ciphertext, {{"k", "1"}}}, {(*wrapped)[1]->ciphertext, {{"k", "wrong"}}}};
  auto opened = c.unwrap_batch("demo", unwraps);
  ASSERT_TRUE(opened);
  ASSERT_TRUE((*opened)[0]);
  EXPECT_EQ(text((*opened)[0]->plaintext), "one");
  ASSERT_FALSE((*opened)[1]);
  EXPECT_EQ((*opened)[1].error().code, ErrorCode::invalid_ciphertext);
  const DataKeyItem dks[] = {{16, {}, true}, {32, {}, false}};
  auto keys = c.datakey_batch("demo", dks);
  ASSERT_TRUE(keys && (*keys)[0] && (*keys)[1]);
  EXPECT_EQ((*keys)[0]->plaintext.size(), 16u);
  EXPECT_TRUE((*keys)[1]->plaintext.empty());
  auto rewrapped = c.rewrap_batch("demo", std::span(unwraps, 1));
  ASSERT_TRUE(rewrapped && (*rewrapped)[0]);
  const DeriveItem derives[] = {{one, 16, std::nullopt}, {two, 24, 1u}};
  auto derived = c.derive_batch("demo-derive", derives);
  ASSERT_TRUE(derived && (*derived)[0] && (*derived)[1]);
  EXPECT_EQ((*derived)[1]->key.size(), 24u);
}

TEST_F(CppClientE2E, KeysHealthAndErrorsCarryTheContractFields) {
  auto c = client();
  auto keys = c.keys();
  ASSERT_TRUE(keys) << keys.error().describe();
  bool found = false;
  for (const auto& k : *keys) found = found || (k.name == "demo" && k.algorithm == "aes-256-gcm" && k.state == "enabled");
  EXPECT_TRUE(found);
  auto missing = c.key("no-such-key");
  ASSERT_FALSE(missing);
  EXPECT_TRUE(missing.error().code == ErrorCode::not_found || missing.error().code == ErrorCode::permission_denied)
      << missing.error().describe();
  auto denied = c.wrap("not-mine", bytes("x"));
  ASSERT_FALSE(denied);
  EXPECT_EQ(denied.error().code, ErrorCode::permission_denied);
  EXPECT_EQ(denied.error().http_status, 403);
  auto health = c.health();
  ASSERT_TRUE(health) << health.error().describe();
  EXPECT_EQ(health->status, "ok");
  EXPECT_EQ(health->http_status, 200);
  EXPECT_TRUE(health->token_available);
  EXPECT_TRUE(health->audit_writable);
}

TEST_F(CppClientE2E, AttestationVerifiesAgainstThePinnedKeyAndFailsAgainstAnother) {
  auto c = client();
  auto first = c.fetch_attestation();
  ASSERT_TRUE(first) << first.error().describe();
  EXPECT_TRUE(first->trusted());
  EXPECT_FALSE(first->checked_with_pinned_key);
  AttestOptions pinned;
  pinned.pinned_public_key = first->public_key;
  pinned.nonce = bytes("a fresh nonce");
  pinned.keys = {"demo"};
  auto checked = c.attest(pinned);
  ASSERT_TRUE(checked) << checked.error().describe();
  EXPECT_TRUE(checked->checked_with_pinned_key);
  EXPECT_NE(checked->report.find(checked->nonce), std::string::npos);
  AttestOptions stranger;
  stranger.pinned_public_key = stranger_public_key();
  ASSERT_FALSE(stranger.pinned_public_key->empty());
  auto refused = c.attest(stranger);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, ErrorCode::verification_failed);
}

TEST_F(CppClientE2E, ADaemonThatIsGoneIsAConnectionFailureNotAHang) {
  Daemon gone;
  const std::string socket = gone.service_socket();
  ASSERT_EQ(gone.terminate(), 0);
  ClientOptions o;
  o.socket_path = socket;
  o.timeout = std::chrono::seconds(2);
  o.max_retry_wait = std::chrono::milliseconds(10);
  auto r = Client(o).unwrap("demo", "Q1NUAQ==");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::connection_failed) << r.error().describe();
}

TEST_F(CppClientE2E, TheEnvelopeExampleEncryptsAFileAndDecryptsItWithTheWrappedDataKey) {
  const std::string dir = daemon_->dir();
  std::string original;
  for (int i = 0; i < 5000; ++i) original += "line " + std::to_string(i) + "\n";
  std::ofstream(dir + "/plain.txt", std::ios::binary) << original;
  const std::string example = std::string(CUSTODY_ENVELOPE_EXAMPLE) + " --socket " + daemon_->service_socket() + " demo ";
  ASSERT_EQ(run(example + "encrypt " + dir + "/plain.txt " + dir + "/sealed.bin >/dev/null"), 0);
  const std::string sealed = read_file(dir + "/sealed.bin");
  EXPECT_EQ(sealed.substr(0, 4), "CENV");
  EXPECT_EQ(sealed.find("line 4999"), std::string::npos);  // the data is not in the clear
  ASSERT_EQ(run(example + "decrypt " + dir + "/sealed.bin " + dir + "/opened.txt >/dev/null"), 0);
  EXPECT_EQ(read_file(dir + "/opened.txt"), original);
  // One flipped byte of ciphertext: the tag does not check and nothing is written.
  std::string tampered = sealed;
  tampered[tampered.size() - 40] ^= 1;
  std::ofstream(dir + "/tampered.bin", std::ios::binary) << tampered;
  EXPECT_NE(run(example + "decrypt " + dir + "/tampered.bin " + dir + "/never.txt 2>/dev/null"), 0);
  EXPECT_FALSE(std::ifstream(dir + "/never.txt").good());
  // The wrapped DEK in the header is bound to its key: another key cannot open it.
  ASSERT_EQ(daemon_->create_key("other", "aes-256-gcm", allow_me_everything()), 201);
  EXPECT_NE(run(std::string(CUSTODY_ENVELOPE_EXAMPLE) + " --socket " + daemon_->service_socket() + " other decrypt " +
                dir + "/sealed.bin " + dir + "/never.txt 2>/dev/null"),
            0);
}
