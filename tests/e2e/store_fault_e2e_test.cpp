// A state database with one table's b-tree page spoiled (SQLite answers SQLITE_CORRUPT when it
// reads it), as a disk read error or a bad restore would leave it: custodyd refuses to start,
// naming the file, the table and SQLite's message and pointing to the restore procedure, instead
// of starting on what it could read (keys without versions, requests and jobs silently gone).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "tests/support/daemon_process.h"

using namespace custody;
using namespace custody::test;
namespace json = boost::json;

namespace {

// Overwrites the root page of table in the database file at path (not open anywhere).
void spoil_table(const std::string& path, const std::string& table) {
  const std::string query = "sqlite3 -batch -noheader " + path +
                            " \"SELECT rootpage FROM sqlite_master WHERE type = 'table' AND name = '" + table +
                            "'; PRAGMA page_size;\" > " + path + ".pages";
  ASSERT_EQ(run(query), 0);
  std::ifstream pages(path + ".pages");
  long root = 0, page_size = 0;
  ASSERT_TRUE(pages >> root >> page_size) << table;
  ASSERT_GT(root, 1);
  std::fstream db(path, std::ios::in | std::ios::out | std::ios::binary);
  ASSERT_TRUE(db);
  db.seekp((root - 1) * page_size);
  const std::string garbage(static_cast<std::size_t>(page_size), '\x5a');
  db.write(garbage.data(), static_cast<std::streamsize>(garbage.size()));
  ASSERT_TRUE(db.good());
}

}  // namespace

TEST(StoreFaultE2E, ASpoiledTableRefusesStartNamingTheFileTheTableAndSqlitesMessage) {
  Daemon d;
  ASSERT_EQ(d.create_key("k", "aes-256-gcm", allow_me_everything()), 201);
  ASSERT_EQ(d.admin_operation("rotate-key", {{"name", "k"}}).first, 201);
  // A request still waiting for its second approval: rows in admin_requests and approvals.
  auto proposed = d.admin().call("POST", "/v1/admin/requests",
                                 json::serialize(json::object{{"operation", "rotate-key"}, {"params", {{"name", "k"}}}}));
  ASSERT_TRUE(proposed && proposed->status == 201) << (proposed ? proposed->body : "no answer");
  const std::string id(json::parse(proposed->body).at("request").at("id").as_string());
  ASSERT_EQ(d.approve(id, "alice").first, 200);
  ASSERT_EQ(d.terminate(), 0);

  const std::string state = d.dir() + "/state.db";
  const std::string good = d.dir() + "/state.db.good";
  std::filesystem::copy_file(state, good);
  for (const char* table : {"key_versions", "intents", "admin_requests", "approvals", "import_jobs"}) {
    SCOPED_TRACE(table);
    std::filesystem::copy_file(good, state, std::filesystem::copy_options::overwrite_existing);
    spoil_table(state, table);
    const auto log_before = d.log().size();
    EXPECT_THROW(d.start(), std::runtime_error) << "custodyd started on a database with table " << table << " spoiled";
    EXPECT_FALSE(d.running());
    const std::string log = d.log().substr(log_before);
    EXPECT_NE(log.find("cannot start: the state database " + state), std::string::npos) << log;
    EXPECT_NE(log.find(std::string("table ") + table), std::string::npos) << log;
    EXPECT_NE(log.find("malformed"), std::string::npos) << log;  // SQLite's message for SQLITE_CORRUPT
    EXPECT_NE(log.find("Backups of state.db"), std::string::npos) << log;
    EXPECT_EQ(log.find("ready"), std::string::npos) << log;
  }
  // The untouched copy starts, with the key's two versions and the pending request.
  std::filesystem::copy_file(good, state, std::filesystem::copy_options::overwrite_existing);
  d.start();
  auto key = d.service().call("GET", "/v1/keys/k");
  ASSERT_TRUE(key && key->status == 200);
  EXPECT_EQ(json::parse(key->body).at("versions").as_array().size(), 2u) << key->body;
  auto request = d.admin().call("GET", "/v1/admin/requests/" + id);
  ASSERT_TRUE(request && request->status == 200);
  EXPECT_EQ(json::parse(request->body).at("request").at("state").as_string(), "pending") << request->body;
}
