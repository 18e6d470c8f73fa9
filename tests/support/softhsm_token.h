#pragma once
// A fresh SoftHSMv2 token in a temporary directory (its own SOFTHSM2_CONF), made with
// softhsm2-util, and an open module + logged-in session pool on it for in-process tests.
#include <memory>
#include <string>

#include "pkcs11/module.h"
#include "pkcs11/session_pool.h"

namespace custody::test {

// A temporary directory removed with everything in it when the object goes away.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

struct TokenFiles {
  std::string conf;      // SOFTHSM2_CONF for this token
  std::string pin_file;  // mode 0600
  std::string pin;
  std::string label;
};

// Writes a softhsm2.conf under dir and initialises a token with the label.
TokenFiles make_softhsm_token(const std::string& dir, const std::string& label);

// The in-process token every integration test shares (one per test binary: SoftHSMv2 reads
// SOFTHSM2_CONF once per C_Initialize).
class SharedToken {
 public:
  static SharedToken& get();
  p11::SessionPool& pool() { return *pool_; }
  p11::Module& module() { return *module_; }
  const TokenFiles& files() const { return files_; }

 private:
  SharedToken();
  TempDir dir_;
  TokenFiles files_;
  std::unique_ptr<p11::Module> module_;
  std::unique_ptr<p11::SessionPool> pool_;
};

// Runs a shell command; returns its exit status.
int run(const std::string& command);
std::string read_file(const std::string& path);
void write_file(const std::string& path, const std::string& content);

}  // namespace custody::test
