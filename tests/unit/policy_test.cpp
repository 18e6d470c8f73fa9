#include <gtest/gtest.h>
#include <pwd.h>

#include <boost/json.hpp>

#include "daemon/core/keys/policy.h"

using namespace custody::core;

TEST(Policy, GrantsOnlyTheListedOperationsToTheNamedSubject) {
  auto p = parse_policy(boost::json::parse(R"([{"uid":1000,"operations":["wrap","unwrap"]},{"gid":50,"operations":["derive"]}])"));
  ASSERT_TRUE(p);
  Peer alice{1000, 100, 1}, group_member{2000, 50, 1}, stranger{3000, 3000, 1};
  EXPECT_TRUE(p->allows(alice, Operation::wrap));
  EXPECT_TRUE(p->allows(alice, Operation::unwrap));
  EXPECT_FALSE(p->allows(alice, Operation::datakey));
  EXPECT_FALSE(p->allows(alice, Operation::derive));
  EXPECT_TRUE(p->allows(group_member, Operation::derive));
  EXPECT_FALSE(p->allows(group_member, Operation::wrap));
  EXPECT_FALSE(p->allows_any(stranger));
}

TEST(Policy, ResolvesUserNames) {
  auto p = parse_policy(boost::json::parse(R"([{"name":"root","operations":["rewrap"]}])"));
  ASSERT_TRUE(p);
  EXPECT_TRUE(p->allows(Peer{0, 12345, 1}, Operation::rewrap));
  EXPECT_FALSE(p->allows(Peer{1, 0, 1}, Operation::rewrap));
  EXPECT_FALSE(parse_policy(boost::json::parse(R"([{"name":"no-such-user-here","operations":["wrap"]}])")));
}

TEST(Policy, AStoredRuleForADeletedUserMatchesNobody) {
  auto v = boost::json::parse(R"([{"name":"no-such-user-here","operations":["wrap"]},{"uid":5,"operations":["wrap"]}])");
  EXPECT_FALSE(parse_policy(v));
  auto stored = parse_policy(v, false);
  ASSERT_TRUE(stored);
  EXPECT_FALSE(stored->allows(Peer{0, 0, 1}, Operation::wrap));
  EXPECT_TRUE(stored->allows(Peer{5, 5, 1}, Operation::wrap));
  EXPECT_EQ(boost::json::serialize(policy_to_json(*stored)),
            R"([{"name":"no-such-user-here","operations":["wrap"]},{"uid":5,"operations":["wrap"]}])");
}

TEST(Policy, RefusesMalformedRules) {
  for (const char* bad : {R"({})", R"([{"operations":["wrap"]}])", R"([{"uid":1,"gid":2,"operations":["wrap"]}])",
                          R"([{"uid":-1,"operations":["wrap"]}])", R"([{"uid":1,"operations":["encrypt"]}])",
                          R"([{"uid":1,"operations":[]}])", R"([{"uid":1}])", R"([{"uid":1,"operations":["wrap"],"x":1}])"})
    EXPECT_FALSE(parse_policy(boost::json::parse(bad))) << bad;
}

TEST(Policy, SerializesBackToTheSameRules) {
  const char* text = R"([{"uid":7,"operations":["wrap","datakey"]},{"gid":8,"operations":["derive"]}])";
  auto p = parse_policy(boost::json::parse(text));
  ASSERT_TRUE(p);
  EXPECT_EQ(boost::json::serialize(policy_to_json(*p)), text);
}
