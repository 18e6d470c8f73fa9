#pragma once
// A PKCS#11 module loaded with dlopen. One Module per process: C_Initialize once, C_Finalize at
// the end, and reset() (finalize + initialize) to recover after a device error.
#include <memory>
#include <optional>
#include <string>

#include "pkcs11/error.h"

namespace custody::p11 {

struct LibraryInfo {
  std::string manufacturer;
  std::string description;
  std::string version;       // "major.minor"
  std::string cryptoki_version;
};

class Module {
 public:
  // init_args: the string some modules (NSS softokn) read from CK_C_INITIALIZE_ARGS.pReserved.
  static Expected<std::unique_ptr<Module>, std::string> load(const std::string& path,
                                                              std::optional<std::string> init_args);
  ~Module();
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  CK_FUNCTION_LIST* api() const { return api_; }
  const std::string& path() const { return path_; }
  Result<LibraryInfo> info() const;
  Status reset();

 private:
  Module() = default;
  Status initialize();
  void* handle_ = nullptr;
  CK_FUNCTION_LIST* api_ = nullptr;
  std::string path_;
  std::optional<std::string> init_args_;
  bool initialized_ = false;
};

// PKCS#11 pads fixed-width text fields with blanks; trim them.
std::string padded_field(const unsigned char* data, std::size_t size);

}  // namespace custody::p11
