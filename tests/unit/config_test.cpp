#include <gtest/gtest.h>

#include "config/config.h"

using namespace custody::config;

namespace {

const char* kGood = R"(token:
  module: /usr/lib/softhsm/libsofthsm2.so
  label: custody
  pin: {file: /etc/custody/pin}
state:
  path: /var/lib/custody/state.db
audit:
  path: /var/log/custody/audit.jsonl
dual_control:
  operators:
    - {name: alice, public_key: /etc/custody/operators/alice.pem}
    - {name: bob, public_key: /etc/custody/operators/bob.pem}
)";

std::vector<ConfigError> errors_of(const std::string& text) {
  auto c = parse_config(text, "test.yaml");
  return c ? std::vector<ConfigError>{} : c.error();
}

}  // namespace

TEST(Config, AMinimalFileGetsTheDocumentedDefaults) {
  auto c = parse_config(kGood, "test.yaml");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->token.pin.kind, custody::p11::PinSource::Kind::file);
  EXPECT_EQ(c->service_socket.path, "/run/custody/service.sock");
  EXPECT_EQ(c->admin_socket.path, "/run/custody/admin.sock");
  EXPECT_EQ(c->service_socket.mode, 0660u);
  EXPECT_EQ(c->limits.max_body_bytes, 65536u);
  EXPECT_EQ(c->audit.durability, Durability::group);
  EXPECT_FALSE(c->token.workers.has_value());  // auto: chosen at start
  EXPECT_EQ(c->sha256.size(), 64u);
}

TEST(Config, TokenWorkersAreAutoZeroForInlineOrAPoolNoLargerThanTheSessions) {
  auto with_workers = [](const std::string& value) {
    std::string text = kGood;
    return text.insert(text.find("state:"), "  sessions: 4\n  workers: " + value + "\n");
  };
  auto inline_calls = parse_config(with_workers("0"), "test.yaml");
  ASSERT_TRUE(inline_calls);
  EXPECT_EQ(inline_calls->token.workers, 0u);
  auto pool = parse_config(with_workers("4"), "test.yaml");
  ASSERT_TRUE(pool);
  EXPECT_EQ(pool->token.workers, 4u);
  auto automatic = parse_config(with_workers("auto"), "test.yaml");
  ASSERT_TRUE(automatic);
  EXPECT_FALSE(automatic->token.workers.has_value());
  for (const char* bad : {"5", "-1", "many", "257"}) {
    auto errs = errors_of(with_workers(bad));
    ASSERT_EQ(errs.size(), 1u) << bad;
    EXPECT_EQ(errs[0].key_path, "token.workers") << errs[0].message;
  }
}

TEST(Config, UnknownKeysAreRefusedWithPathAndPosition) {
  auto errs = errors_of(std::string(kGood) + "limits:\n  max_body: 10\n");
  ASSERT_EQ(errs.size(), 1u);
  EXPECT_EQ(errs[0].key_path, "limits.max_body");
  EXPECT_EQ(errs[0].line, 14);
  EXPECT_EQ(errs[0].column, 3);
  EXPECT_EQ(errs[0].format("test.yaml"), "test.yaml:14:3: limits.max_body: unknown key");
}

TEST(Config, EveryProblemIsReportedNotJustTheFirst) {
  auto errs = errors_of(std::string(kGood) + "limits:\n  max_body_bytes: 5\n  idle_timeout: soon\n");
  ASSERT_EQ(errs.size(), 2u);
  EXPECT_EQ(errs[0].key_path, "limits.max_body_bytes");
  EXPECT_EQ(errs[1].key_path, "limits.idle_timeout");
}

TEST(Config, ThePinIsNeverTakenFromTheYaml) {
  std::string text = kGood;
  text.replace(text.find("pin: {file: /etc/custody/pin}"), 29, "pin: \"1234\"");
  auto errs = errors_of(text);
  ASSERT_EQ(errs.size(), 1u);
  EXPECT_EQ(errs[0].key_path, "token.pin");
  std::string two = kGood;
  two.replace(two.find("{file: /etc/custody/pin}"), 24, "{file: /x, env: PIN}");
  EXPECT_EQ(errors_of(two).size(), 1u);
}

TEST(Config, RequiredSectionsAndValuesAreChecked) {
  EXPECT_FALSE(errors_of("token:\n  module: /x\n  pin: {env: P}\n").empty());  // no label/serial, state, audit
  EXPECT_FALSE(errors_of(std::string(kGood) + "sockets:\n  service: {mode: \"0777\"}\n").empty());
  EXPECT_FALSE(errors_of(std::string(kGood) + "audit2: {}\n").empty());
  EXPECT_FALSE(errors_of("token: [\n").empty());  // not YAML
  auto durability = errors_of(std::string(kGood).replace(std::string(kGood).find("audit:\n") + 7, 0, "  durability: sometimes\n"));
  ASSERT_EQ(durability.size(), 1u);
  EXPECT_EQ(durability[0].key_path, "audit.durability");
}

TEST(Config, QuorumRulesAreEnforcedAtStart) {
  auto with = [](const std::string& quorum) { return errors_of(std::string(kGood) + "  quorum: {" + quorum + "}\n"); };
  EXPECT_TRUE(with("create-key: 1, rotate-key: 1, enable-key: 1, cancel-destruction: 1").empty());
  for (const char* op : {"schedule-destruction", "set-policy", "create-import-job", "disable-key", "set-min-decrypt-version"}) {
    auto errs = with(std::string(op) + ": 1");
    ASSERT_EQ(errs.size(), 1u) << op;
    EXPECT_NE(errs[0].message.find("at least 2"), std::string::npos) << errs[0].message;
  }
  auto too_many = with("rotate-key: 3");  // only two operators
  ASSERT_EQ(too_many.size(), 1u);
  EXPECT_NE(too_many[0].message.find("only 2 operator"), std::string::npos) << too_many[0].message;
  EXPECT_EQ(with("launch-missiles: 2").size(), 1u);
  std::string no_dual = kGood;
  no_dual.resize(no_dual.find("dual_control:"));
  EXPECT_EQ(errors_of(no_dual).size(), 1u);
}

TEST(Config, ShippedSamplesAreValid) {
  for (const char* name : {"custodyd.softhsm.yaml", "custodyd.luna.yaml", "custodyd.yubihsm.yaml", "custodyd.nss.yaml"}) {
    auto c = load_config(std::string(CUSTODY_SOURCE_DIR) + "/config/samples/" + name);
    if (c) continue;
    // Socket groups name accounts made at install time; this machine need not have them.
    for (const auto& e : c.error())
      EXPECT_NE(e.key_path.find(".group"), std::string::npos) << name << ": " << e.format(name);
  }
}

TEST(Config, NoSocketModeLetsEveryLocalUserConnect) {
  auto service_mode = [](const char* mode) {
    return errors_of(std::string(kGood) + "sockets:\n  service: {mode: \"" + mode + "\"}\n");
  };
  // Connecting needs write permission: any o+w bit opens the socket to every uid.
  for (const char* mode : {"0666", "0662", "0602", "0777"}) {
    auto errs = service_mode(mode);
    ASSERT_EQ(errs.size(), 1u) << mode;
    EXPECT_EQ(errs[0].key_path, "sockets.service.mode") << mode;
  }
  EXPECT_TRUE(service_mode("0660").empty());
  EXPECT_TRUE(service_mode("0664").empty());  // others may read, which grants nothing
}

TEST(Config, TheAdminSocketIsNeverGroupWritableWithoutANamedGroup) {
  auto c = parse_config(kGood, "test.yaml");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->admin_socket.mode, 0600u);
  auto errs = errors_of(std::string(kGood) + "sockets:\n  admin: {mode: \"0660\"}\n");
  ASSERT_EQ(errs.size(), 1u);
  EXPECT_EQ(errs[0].key_path, "sockets.admin.mode");
  EXPECT_TRUE(errors_of(std::string(kGood) + "sockets:\n  admin: {mode: \"0660\", group: root}\n").empty());
  EXPECT_TRUE(errors_of(std::string(kGood) + "sockets:\n  admin: {mode: \"0600\"}\n").empty());
}

TEST(Config, HardeningLimitsHaveSafeDefaultsAndBounds) {
  auto c = parse_config(kGood, "test.yaml");
  ASSERT_TRUE(c);
  EXPECT_LT(c->limits.max_in_flight, c->limits.max_connections + c->limits.admin_connections);
  EXPECT_LT(c->limits.max_connections_per_uid, c->limits.max_connections);
  EXPECT_LT(c->limits.first_byte_timeout, c->limits.idle_timeout);
  EXPECT_EQ(c->audit.checkpoint_interval, std::chrono::seconds(60));
  auto errs = errors_of(std::string(kGood) + "limits:\n  uid_requests_per_second: -1\n  max_connections_per_uid: 0\n");
  ASSERT_EQ(errs.size(), 2u);
  EXPECT_EQ(errs[0].key_path, "limits.max_connections_per_uid");
  EXPECT_EQ(errs[1].key_path, "limits.uid_requests_per_second");
  auto files = errors_of(std::string(kGood).replace(std::string(kGood).find("audit:\n") + 7, 0, "  max_files: 1\n"));
  ASSERT_EQ(files.size(), 1u);
  EXPECT_EQ(files[0].key_path, "audit.max_files");
}
