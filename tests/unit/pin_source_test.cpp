// Where the token PIN comes from: a file is read whole or refused (never cut short), an
// environment variable is removed from the environment once read.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstdlib>

#include "pkcs11/pin_source.h"
#include "tests/support/softhsm_token.h"

using namespace custody;
using namespace custody::test;

namespace {

std::string pin_file(const TempDir& dir, const std::string& name, const std::string& content, mode_t mode = 0600) {
  const std::string path = dir.path() + "/" + name;
  write_file(path, content);
  EXPECT_EQ(::chmod(path.c_str(), mode), 0);
  return path;
}

p11::PinSource file_source(const std::string& path) { return {p11::PinSource::Kind::file, path}; }

}  // namespace

TEST(PinSource, APinFileOverTheLimitIsAnErrorNamingTheFileNotATruncatedPin) {
  TempDir dir;
  const std::string path = pin_file(dir, "long.pin", std::string(5000, '7'));
  auto pin = p11::read_pin(file_source(path));
  ASSERT_FALSE(pin) << "a 5000-byte PIN file was read as a PIN of " << pin->size() << " bytes";
  EXPECT_NE(pin.error().find(path), std::string::npos) << pin.error();
  EXPECT_NE(pin.error().find("4096"), std::string::npos) << pin.error();
}

TEST(PinSource, APinFileUpToTheLimitIsReadWholeWithoutItsNewline) {
  TempDir dir;
  const std::string longest(4096, 'k');
  auto pin = p11::read_pin(file_source(pin_file(dir, "max.pin", longest)));
  ASSERT_TRUE(pin) << pin.error();
  EXPECT_EQ(pin->view(), longest);
  auto short_pin = p11::read_pin(file_source(pin_file(dir, "short.pin", "1234\n")));
  ASSERT_TRUE(short_pin) << short_pin.error();
  EXPECT_EQ(short_pin->view(), "1234");
}

TEST(PinSource, AFileOthersCanReadOrAnEmptyOneIsRefused) {
  TempDir dir;
  auto open = p11::read_pin(file_source(pin_file(dir, "open.pin", "1234", 0644)));
  ASSERT_FALSE(open);
  EXPECT_NE(open.error().find("group or others"), std::string::npos) << open.error();
  auto empty = p11::read_pin(file_source(pin_file(dir, "empty.pin", "\n")));
  ASSERT_FALSE(empty);
  EXPECT_NE(empty.error().find("empty"), std::string::npos) << empty.error();
  auto missing = p11::read_pin(file_source(dir.path() + "/missing.pin"));
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.error().find("missing.pin"), std::string::npos) << missing.error();
}

TEST(PinSource, AnEnvironmentPinIsRemovedFromTheEnvironmentOnceRead) {
  ASSERT_EQ(::setenv("CUSTODY_TEST_PIN", "246810", 1), 0);
  auto pin = p11::read_pin({p11::PinSource::Kind::env, "CUSTODY_TEST_PIN"});
  ASSERT_TRUE(pin) << pin.error();
  EXPECT_EQ(pin->view(), "246810");
  EXPECT_EQ(std::getenv("CUSTODY_TEST_PIN"), nullptr) << "the PIN is still in the environment";
  auto again = p11::read_pin({p11::PinSource::Kind::env, "CUSTODY_TEST_PIN"});
  ASSERT_FALSE(again);
  EXPECT_NE(again.error().find("CUSTODY_TEST_PIN"), std::string::npos);
}
