// What a failed decrypt answers depends on what the token said and on the token's make
// (pkcs11/token_quirks.h): only where the quirks table says so is CKR_GENERAL_ERROR a tag mismatch.
// The token's answer comes from the forwarding shim over SoftHSMv2.
#include <gtest/gtest.h>

#include <filesystem>

#include "common/base64.h"
#include "tests/support/daemon_process.h"

using namespace custody;
using namespace custody::test;
namespace json = boost::json;

namespace {

struct Answer {
  int status;
  std::string code;
  std::string message;
};

class DecryptAnswers {
 public:
  // manufacturer: what the token reports as its make; empty keeps SoftHSMv2's own.
  explicit DecryptAnswers(const std::string& manufacturer) {
    DaemonOptions o;
    o.module = CUSTODY_FAULT_SHIM;
    o.env["CUSTODY_SHIM_DECRYPT_RV_FILE"] = rv_file_;
    if (!manufacturer.empty()) o.env["CUSTODY_SHIM_MANUFACTURER"] = manufacturer;
    daemon_ = std::make_unique<Daemon>(o);
    EXPECT_EQ(daemon_->create_key("k", "aes-256-gcm", allow_me_everything()), 201);
    auto [status, sealed] = daemon_->post("/v1/keys/k/wrap", {{"plaintext", base64_encode(to_bytes("secret"))}});
    EXPECT_EQ(status, 200);
    ciphertext_ = std::string(sealed.at("ciphertext").as_string());
  }
  // The answer to an unwrap of a sound ciphertext while the token's C_Decrypt answers rv.
  Answer unwrap_when_token_says(CK_RV rv) {
    write_file(rv_file_, std::to_string(rv));
    auto [status, body] = daemon_->post("/v1/keys/k/unwrap", {{"ciphertext", ciphertext_}});
    std::filesystem::remove(rv_file_);
    if (status == 200) return {status, "", ""};
    return {status, std::string(body.at("error").at("code").as_string()),
            std::string(body.at("error").at("message").as_string())};
  }
  Daemon& daemon() { return *daemon_; }

 private:
  TempDir dir_;
  std::string rv_file_ = dir_.path() + "/decrypt-rv";
  std::unique_ptr<Daemon> daemon_;
  std::string ciphertext_;
};

}  // namespace

TEST(ErrorModelE2E, GeneralErrorIsATagMismatchOnlyOnATokenKnownToSaySo) {
  DecryptAnswers softhsm("");
  auto quirk = softhsm.unwrap_when_token_says(CKR_GENERAL_ERROR);
  EXPECT_EQ(quirk.status, 400);
  EXPECT_EQ(quirk.code, "invalid_ciphertext");
  EXPECT_EQ(softhsm.unwrap_when_token_says(CKR_ENCRYPTED_DATA_INVALID).code, "invalid_ciphertext");
  EXPECT_EQ(softhsm.unwrap_when_token_says(CKR_OK).status, 200);

  // Another make: CKR_GENERAL_ERROR is the token failing, not the client's ciphertext (before: 400).
  DecryptAnswers other("Example HSM Inc.");
  auto failure = other.unwrap_when_token_says(CKR_GENERAL_ERROR);
  EXPECT_EQ(failure.status, 500);
  EXPECT_EQ(failure.code, "internal");
  EXPECT_NE(failure.message.find("the token refused"), std::string::npos) << failure.message;
  // The specification's answer is a tampered ciphertext on every token.
  auto spec = other.unwrap_when_token_says(CKR_ENCRYPTED_DATA_INVALID);
  EXPECT_EQ(spec.status, 400);
  EXPECT_EQ(spec.code, "invalid_ciphertext");
  // A vendor-defined code is the token's, never custody's "not found".
  auto vendor = other.unwrap_when_token_says(CKR_VENDOR_DEFINED | 0xC057);
  EXPECT_EQ(vendor.status, 500);
  EXPECT_NE(vendor.message.find("the token refused"), std::string::npos) << vendor.message;
  EXPECT_EQ(other.unwrap_when_token_says(CKR_OK).status, 200);
  EXPECT_TRUE(other.daemon().running());
}
