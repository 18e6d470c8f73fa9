// SecureString keeps a PIN only in zeroizing heap memory: never in the small-string buffer inside
// the object, which no allocator sees and nothing wipes.
#include <gtest/gtest.h>

#include <cstring>
#include <new>
#include <sstream>

#include "common/secure_buffer.h"

using namespace custody;

namespace {

bool inside(const SecureString& s) {
  const auto* object = reinterpret_cast<const char*>(&s);
  return s.data() >= object && s.data() < object + sizeof s;
}

bool contains(const unsigned char* storage, std::size_t size, const char* needle) {
  const std::size_t n = std::strlen(needle);
  for (std::size_t i = 0; i + n <= size; ++i)
    if (std::memcmp(storage + i, needle, n) == 0) return true;
  return false;
}

}  // namespace

TEST(SecureString, AShortPinNeverLivesInsideTheObject) {
  SecureString empty;
  SecureString pin("1234");
  SecureString copy = pin;
  SecureString from_view(std::string_view("87654321"));
  for (const SecureString* s : {&empty, &pin, &copy, &from_view}) EXPECT_FALSE(inside(*s)) << *s;
  EXPECT_EQ(pin, "1234");
  EXPECT_EQ(copy.view(), "1234");
}

TEST(SecureString, ADestroyedShortPinLeavesNoCopyInTheObjectsStorage) {
  alignas(SecureString) unsigned char storage[sizeof(SecureString)];
  std::memset(storage, 0, sizeof storage);
  auto* s = new (storage) SecureString("pin-4321");
  s->push_back('!');
  ASSERT_EQ(*s, "pin-4321!");
  s->~SecureString();
  EXPECT_FALSE(contains(storage, sizeof storage, "pin-4321")) << "the PIN stayed in the string object's own bytes";
}

TEST(SecureString, MovedFromShrunkAndReassignedStringsStayOnTheHeap) {
  SecureString a("secret");
  SecureString b(std::move(a));
  EXPECT_EQ(b, "secret");
  EXPECT_FALSE(inside(a));
  a.append("again");  // reuse of a moved-from string
  EXPECT_FALSE(inside(a));
  b.shrink_to_fit();
  EXPECT_FALSE(inside(b));
  b.reserve(0);
  EXPECT_FALSE(inside(b));
  SecureString c;
  c = std::move(b);
  EXPECT_EQ(c, "secret");
  EXPECT_FALSE(inside(b));
  EXPECT_FALSE(inside(c));
  b = std::string_view("x");
  EXPECT_FALSE(inside(b));
  c = a;
  EXPECT_EQ(c, "again");
  EXPECT_FALSE(inside(c));
}

TEST(SecureString, GetlineReadsIntoHeapStorage) {
  std::istringstream in("0000\nnext");
  SecureString pin;
  std::getline(in, pin);
  EXPECT_EQ(pin, "0000");
  EXPECT_FALSE(inside(pin));
}
