#include <gtest/gtest.h>

#include "common/hex.h"
#include "daemon/core/crypto/blob_codec.h"

using namespace custody;
using namespace custody::core;

TEST(BlobCodec, HeaderIsMagicNameVersionIv) {
  Bytes iv(12, 0xAB);
  auto h = encode_blob_header("demo", 0x01020304, iv);
  EXPECT_EQ(hex_lower(h), "43535401" "04" "64656d6f" "01020304" "abababababababababababab");
}

TEST(BlobCodec, ParsesWhatItEncodes) {
  Bytes iv(12);
  for (int i = 0; i < 12; ++i) iv[i] = static_cast<std::uint8_t>(i);
  Bytes blob = encode_blob_header("k.e-y_1", 7, iv);
  const std::size_t header_len = blob.size();
  blob.insert(blob.end(), 20, 0x55);  // 4 bytes of ciphertext + 16 of tag
  auto p = parse_blob(blob);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->key_name, "k.e-y_1");
  EXPECT_EQ(p->version, 7u);
  EXPECT_EQ(p->header.size(), header_len);
  EXPECT_TRUE(std::equal(p->iv.begin(), p->iv.end(), iv.begin()));
  EXPECT_EQ(p->ciphertext_and_tag.size(), 20u);
}

TEST(BlobCodec, RefusesMalformedBlobsAsInvalidCiphertext) {
  Bytes iv(12);
  Bytes good = encode_blob_header("demo", 1, iv);
  good.insert(good.end(), 16, 0);
  ASSERT_TRUE(parse_blob(good));
  auto refused = [](Bytes b) {
    auto p = parse_blob(b);
    return !p && p.error().code == Code::invalid_ciphertext;
  };
  Bytes wrong_magic = good;
  wrong_magic[0] = 'X';
  EXPECT_TRUE(refused(wrong_magic));
  Bytes wrong_format = good;
  wrong_format[3] = 2;
  EXPECT_TRUE(refused(wrong_format));
  EXPECT_TRUE(refused(Bytes(good.begin(), good.end() - 1)));  // shorter than a tag
  Bytes long_name = good;
  long_name[4] = 200;
  EXPECT_TRUE(refused(long_name));
  Bytes bad_name = good;
  bad_name[5] = 'D';  // upper case is not a key name
  EXPECT_TRUE(refused(bad_name));
  Bytes zero_version = encode_blob_header("demo", 0, iv);
  zero_version.insert(zero_version.end(), 16, 0);
  EXPECT_TRUE(refused(zero_version));
  EXPECT_TRUE(refused({}));
}
