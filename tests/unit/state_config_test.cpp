// The state section (issue #18): SQLite at a path stays the default; PostgreSQL takes a conninfo
// that never holds a password, and the password from a file or a systemd credential.
#include <gtest/gtest.h>

#include "config/config.h"

using namespace custody::config;

namespace {

std::string with_state(const std::string& state_lines) {
  return "token:\n  module: /usr/lib/softhsm/libsofthsm2.so\n  label: custody\n  pin: {file: /etc/custody/pin}\n"
         "state:\n" + state_lines +
         "audit:\n  path: /var/log/custody/audit.jsonl\n"
         "dual_control:\n  operators:\n    - {name: alice, public_key: /a.pem}\n    - {name: bob, public_key: /b.pem}\n";
}

std::vector<std::string> error_paths(const std::string& text) {
  auto c = parse_config(text, "test.yaml");
  std::vector<std::string> paths;
  if (!c)
    for (const auto& e : c.error()) paths.push_back(e.key_path + ": " + e.message);
  return paths;
}

}  // namespace

TEST(StateConfig, APathAloneIsSqliteAsBefore) {
  auto c = parse_config(with_state("  path: /var/lib/custody/state.db\n"), "test.yaml");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->state_backend, "sqlite");
  EXPECT_EQ(c->state_path, "/var/lib/custody/state.db");
  EXPECT_TRUE(c->state_dsn.empty());
}

TEST(StateConfig, PostgresqlTakesADsnAndAPasswordFileOrCredential) {
  auto c = parse_config(with_state("  backend: postgresql\n  dsn: \"host=db dbname=custody sslmode=verify-full\"\n"
                                   "  password_file: /etc/custody/db-password\n"),
                        "test.yaml");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->state_backend, "postgresql");
  EXPECT_EQ(c->state_dsn, "host=db dbname=custody sslmode=verify-full");
  EXPECT_EQ(c->state_password_file, "/etc/custody/db-password");
  EXPECT_FALSE(c->state_password_credential);
  auto cred = parse_config(with_state("  backend: postgresql\n  dsn: \"host=db\"\n  password_credential: db-password\n"),
                           "test.yaml");
  ASSERT_TRUE(cred);
  EXPECT_EQ(cred->state_password_file, "db-password");
  EXPECT_TRUE(cred->state_password_credential);
}

TEST(StateConfig, MistakesAreRefusedWithTheKeyPath) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"  backend: mysql\n  path: /s.db\n", "state.backend"},
      {"  backend: postgresql\n", "state.dsn"},                               // required
      {"  backend: postgresql\n  dsn: \"host=db\"\n  path: /s.db\n", "state.path"},  // the other backend's
      {"  path: /s.db\n  dsn: \"host=db\"\n", "state.dsn"},                   // sqlite takes no dsn
      {"  backend: postgresql\n  dsn: \"host=db password=hunter2\"\n", "state.dsn"},
      {"  backend: postgresql\n  dsn: \"host=db PASSWORD = 'x'\"\n", "state.dsn"},
      {"  backend: postgresql\n  dsn: \"postgresql://custody:hunter2@db/custody\"\n", "state.dsn"},
      {"  backend: postgresql\n  dsn: \"host=db\"\n  password_file: /p\n  password_credential: p\n", "state"},
      {"  backend: sqlite\n", "state.path"},
  };
  for (const auto& [lines, path] : cases) {
    auto errs = error_paths(with_state(lines));
    ASSERT_EQ(errs.size(), 1u) << lines;
    EXPECT_EQ(errs[0].substr(0, errs[0].find(':')), path) << errs[0];
  }
  // A URI without a password is fine.
  EXPECT_TRUE(error_paths(with_state("  backend: postgresql\n  dsn: \"postgresql://custody@db/custody\"\n")).empty());
}
