// SigV4 verification and the XKS ciphertextMetadata codec, without a daemon. The signature vector is
// AWS's own (aws-sig-v4-test-suite "get-vanilla"), so the verifier is checked against a signer
// that is not ours.
#include <gtest/gtest.h>

#include <ctime>

#include "daemon/xks/ciphertext_metadata.h"
#include "daemon/xks/secondary_authorization.h"
#include "daemon/xks/sigv4.h"

namespace custody::xks {
namespace {

using transport::HttpField;

constexpr const char* kVanillaSignature = "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31";
constexpr const char* kSecret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

std::time_t vanilla_time() {
  std::tm tm{};
  tm.tm_year = 2015 - 1900;
  tm.tm_mon = 7;
  tm.tm_mday = 30;
  tm.tm_hour = 12;
  tm.tm_min = 36;
  return ::timegm(&tm);
}

std::vector<HttpField> vanilla_fields(std::string signature = kVanillaSignature) {
  return {{"host", "example.amazonaws.com"},
          {"x-amz-date", "20150830T123600Z"},
          {"authorization", "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
                            "SignedHeaders=host;x-amz-date, Signature=" + signature}};
}

std::vector<SigV4Credential> credentials() {
  std::string s = kSecret;
  return {{"AKIDEXAMPLE", SecureBytes(s.begin(), s.end())}};
}

SigV4Settings vanilla_settings() {
  SigV4Settings s;
  s.region = "us-east-1";
  s.service = "service";
  return s;
}

Expected<std::string, std::string> verify(const std::vector<HttpField>& fields, std::time_t now = vanilla_time(),
                                          std::string_view body = "", SigV4Settings settings = vanilla_settings()) {
  return verify_sigv4(SignedRequest{"GET", "/", fields, body}, credentials(), settings, now);
}

TEST(SigV4, AcceptsAwsGetVanillaVector) {
  auto signer = verify(vanilla_fields());
  ASSERT_TRUE(signer) << signer.error();
  EXPECT_EQ(*signer, "AKIDEXAMPLE");
}

TEST(SigV4, RefusesOneChangedSignatureDigit) {
  std::string bad = kVanillaSignature;
  bad[10] = bad[10] == 'a' ? 'b' : 'a';
  auto r = verify(vanilla_fields(bad));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), "the signature does not match");
}

TEST(SigV4, RefusesAChangedBodyOrPath) {
  EXPECT_FALSE(verify(vanilla_fields(), vanilla_time(), "x"));
  auto fields = vanilla_fields();
  EXPECT_FALSE(verify_sigv4(SignedRequest{"GET", "/other", fields, ""}, credentials(), vanilla_settings(), vanilla_time()));
  EXPECT_FALSE(verify_sigv4(SignedRequest{"POST", "/", fields, ""}, credentials(), vanilla_settings(), vanilla_time()));
}

TEST(SigV4, ClockSkewUpToFiveMinutes) {
  EXPECT_TRUE(verify(vanilla_fields(), vanilla_time() + 300));
  EXPECT_TRUE(verify(vanilla_fields(), vanilla_time() - 300));
  EXPECT_FALSE(verify(vanilla_fields(), vanilla_time() + 301));
  EXPECT_FALSE(verify(vanilla_fields(), vanilla_time() - 301));
}

TEST(SigV4, RefusesOtherRegionServiceOrUnknownKey) {
  auto settings = vanilla_settings();
  settings.region = "eu-west-1";
  EXPECT_FALSE(verify(vanilla_fields(), vanilla_time(), "", settings));
  settings = vanilla_settings();
  settings.service = "kms-xks-proxy";
  EXPECT_FALSE(verify(vanilla_fields(), vanilla_time(), "", settings));
  auto fields = vanilla_fields();
  fields[2].value.replace(fields[2].value.find("AKIDEXAMPLE"), 11, "AKIDOTHERXX");
  auto r = verify(fields);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), "unknown access key id");
}

TEST(SigV4, RefusesMissingOrRepeatedAuthorizationAndUnsignedHost) {
  auto fields = vanilla_fields();
  fields.push_back(fields[2]);
  EXPECT_FALSE(verify(fields));
  fields = vanilla_fields();
  fields.pop_back();
  EXPECT_FALSE(verify(fields));
  fields = vanilla_fields();
  fields[2].value = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
                    "SignedHeaders=x-amz-date, Signature=" + std::string(kVanillaSignature);
  auto r = verify(fields);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().find("'host'"), std::string::npos);
}

TEST(SigV4, RefusesADeclaredPayloadHashThatIsNotTheBodys) {
  auto fields = vanilla_fields();
  fields.push_back({"x-amz-content-sha256", "UNSIGNED-PAYLOAD"});
  EXPECT_FALSE(verify(fields));
}

TEST(SigV4, ParsesAndRefusesMalformedAuthorization) {
  auto ok = parse_authorization("AWS4-HMAC-SHA256 Credential=ID/20200101/r/s/aws4_request,SignedHeaders=a;b,Signature=" +
                                std::string(64, 'a'));
  ASSERT_TRUE(ok) << ok.error();
  EXPECT_EQ(ok->signed_headers, (std::vector<std::string>{"a", "b"}));
  for (const std::string& bad : std::vector<std::string>{"", "AWS4-HMAC-SHA256", "Basic abc", "AWS4-HMAC-SHA256 Credential=ID/2020/r/s/aws4_request",
                          "AWS4-HMAC-SHA256 Credential=ID/20200101/r/s/aws4_request, SignedHeaders=b;a, Signature=" + std::string(64, 'a'),
                          "AWS4-HMAC-SHA256 Credential=ID/20200101/r/s/aws4_request, SignedHeaders=a;;b, Signature=" + std::string(64, 'a'),
                          "AWS4-HMAC-SHA256 Credential=ID/20200101/r/s/aws4_request, SignedHeaders=a, Signature=" + std::string(63, 'a'),
                          "AWS4-HMAC-SHA256 Credential=ID/20200101/r/s/other, SignedHeaders=a, Signature=" + std::string(64, 'a'),
                          "AWS4-HMAC-SHA256 Credential=ID/20200101/r/s/aws4_request, Credential=x, SignedHeaders=a, Signature=" + std::string(64, 'a')})
    EXPECT_FALSE(parse_authorization(bad)) << bad;
}

TEST(XksCiphertextMetadata, FormatByteAndVersionRoundTrip) {
  const Bytes m = encode_metadata(0x01020304);
  EXPECT_EQ(m, (Bytes{0x01, 0x01, 0x02, 0x03, 0x04}));
  EXPECT_EQ(decode_metadata(m), 0x01020304u);
  EXPECT_FALSE(decode_metadata(Bytes{0x02, 0, 0, 0, 1}));  // a later format is not read as v1
  EXPECT_FALSE(decode_metadata(Bytes{0x01, 0, 0, 1}));
}

TEST(XksCiphertextMetadata, TokenAadCarriesBothLengths) {
  const Bytes aad{'a', 'b'}, cm{0x01, 0, 0, 0, 7};
  EXPECT_EQ(token_aad(aad, cm), (Bytes{0x00, 0x02, 'a', 'b', 0x05, 0x01, 0, 0, 0, 7}));
  // The spec's confusion case: metadata moved into the AAD gives another token AAD.
  EXPECT_NE(token_aad({}, cm), token_aad(cm, {}));
  EXPECT_EQ(token_aad({}, {}), (Bytes{0, 0, 0}));
}

TEST(XksCiphertextMetadata, IntegrityValueIsSha256OfTheConcatenation) {
  // SHA-256("abc"), split across the five parts.
  const Bytes a{'a'}, b{'b'}, c{'c'};
  const Bytes cdiv = integrity_value(a, {}, b, {}, c);
  EXPECT_EQ(cdiv.size(), 32u);
  EXPECT_EQ(cdiv[0], 0xba);
  EXPECT_EQ(cdiv[31], 0xad);
}

TEST(XksAuthorization, GlobMatchesStarAndQuestionMark) {
  EXPECT_TRUE(glob_match("arn:aws:iam::*:role/app-?", "arn:aws:iam::111122223333:role/app-1"));
  EXPECT_FALSE(glob_match("arn:aws:iam::*:role/app-?", "arn:aws:iam::111122223333:role/app-12"));
  EXPECT_TRUE(glob_match("*", ""));
  EXPECT_FALSE(glob_match("", "x"));
  EXPECT_TRUE(glob_match("a*b*c", "aXXbYYc"));
  EXPECT_FALSE(glob_match("a*b*c", "aXXbYY"));
  // No exponential backtracking on a hostile pattern.
  EXPECT_FALSE(glob_match(std::string(50, '*') + "b", std::string(5000, 'a')));
}

TEST(XksAuthorization, SomeRuleMustAllowAndEachRefusalSaysWhy) {
  const std::vector<AuthorizationRule> rules{
      {"app-encrypts", {"orders-*"}, {"arn:aws:iam::*:role/app"}, {}, {"Encrypt", "GenerateDataKey*"}, {}, {}},
      {"from-vpce", {}, {}, {}, {}, {}, {"vpce-0123"}}};
  AuthorizationRequest r{"orders-db", "arn:aws:iam::111122223333:role/app", "arn:k", "GenerateDataKeyWithoutPlaintext", {}, {}};
  auto v = authorize(rules, r);
  EXPECT_TRUE(v.allowed);
  EXPECT_EQ(v.allowed_by, "app-encrypts");
  r.operation = "Decrypt";
  v = authorize(rules, r);
  EXPECT_FALSE(v.allowed);
  EXPECT_EQ(v.reasons, (std::vector<std::string>{"app-encrypts: kmsOperation does not match", "from-vpce: awsSourceVpce is absent"}));
  r.source_vpce = "vpce-0123";
  EXPECT_TRUE(authorize(rules, r).allowed);
  EXPECT_FALSE(authorize({}, r).allowed);  // no rules at all allow nothing (the front end skips the check then)
}

}  // namespace
}  // namespace custody::xks
