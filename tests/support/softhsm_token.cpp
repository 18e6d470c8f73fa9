#include "tests/support/softhsm_token.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace custody::test {

TempDir::TempDir() {
  std::string tmpl = (std::filesystem::temp_directory_path() / "custody-test-XXXXXX").string();
  if (!::mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
  path_ = tmpl;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

int run(const std::string& command) {
  int rc = std::system(command.c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void write_file(const std::string& path, const std::string& content) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << content;
}

TokenFiles make_softhsm_token(const std::string& dir, const std::string& label) {
  TokenFiles t;
  t.conf = dir + "/softhsm2.conf";
  t.pin = "test-pin-1234";
  t.pin_file = dir + "/" + label + ".pin";
  t.label = label;
  std::filesystem::create_directories(dir + "/tokens");
  write_file(t.conf, "directories.tokendir = " + dir + "/tokens\nobjectstore.backend = file\nlog.level = ERROR\n");
  write_file(t.pin_file, t.pin);
  ::chmod(t.pin_file.c_str(), 0600);
  const std::string cmd = "SOFTHSM2_CONF='" + t.conf + "' softhsm2-util --init-token --free --label '" + label +
                          "' --pin '" + t.pin + "' --so-pin 'so-pin-5678' >/dev/null";
  if (run(cmd) != 0) throw std::runtime_error("softhsm2-util --init-token failed: " + cmd);
  return t;
}

SharedToken& SharedToken::get() {
  static SharedToken token;
  return token;
}

SharedToken::SharedToken() {
  files_ = make_softhsm_token(dir_.path(), "custody-it");
  ::setenv("SOFTHSM2_CONF", files_.conf.c_str(), 1);
  auto m = p11::Module::load(CUSTODY_SOFTHSM_MODULE, std::nullopt);
  if (!m) throw std::runtime_error(m.error());
  module_ = std::move(*m);
  pool_ = std::make_unique<p11::SessionPool>(*module_, p11::TokenSelector{files_.label, std::nullopt},
                                             SecureString(files_.pin.c_str()), 4);
  if (auto ok = pool_->start(); !ok) throw std::runtime_error(ok.error());
}

}  // namespace custody::test
