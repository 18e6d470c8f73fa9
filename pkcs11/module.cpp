#include "pkcs11/module.h"

#include <dlfcn.h>

namespace custody::p11 {

std::string padded_field(const unsigned char* data, std::size_t size) {
  std::string s(reinterpret_cast<const char*>(data), size);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\0')) s.pop_back();
  return s;
}

Expected<std::unique_ptr<Module>, std::string> Module::load(const std::string& path,
                                                            std::optional<std::string> init_args) {
  std::unique_ptr<Module> m(new Module());
  m->path_ = path;
  m->init_args_ = std::move(init_args);
  m->handle_ = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!m->handle_) return unexpected(std::string("cannot load PKCS#11 module: ") + dlerror());
  auto get_list = reinterpret_cast<CK_C_GetFunctionList>(dlsym(m->handle_, "C_GetFunctionList"));
  if (!get_list) return unexpected("module " + path + " has no C_GetFunctionList");
  if (get_list(&m->api_) != CKR_OK || !m->api_)
    return unexpected("C_GetFunctionList of " + path + " failed");
  if (auto st = m->initialize(); !st) return unexpected("cannot initialize module: " + st.error().describe());
  return m;
}

Status Module::initialize() {
  CK_C_INITIALIZE_ARGS args{};
  args.flags = CKF_OS_LOCKING_OK;
  if (init_args_) args.pReserved = init_args_->data();
  CK_RV rv = api_->C_Initialize(&args);
  if (rv == CKR_CRYPTOKI_ALREADY_INITIALIZED) rv = CKR_OK;
  if (rv == CKR_OK) initialized_ = true;
  return check(rv, "C_Initialize");
}

Status Module::reset() {
  if (initialized_) api_->C_Finalize(nullptr);
  initialized_ = false;
  return initialize();
}

Result<LibraryInfo> Module::info() const {
  CK_INFO info{};
  if (auto st = check(api_->C_GetInfo(&info), "C_GetInfo"); !st) return unexpected(st.error());
  auto ver = [](CK_VERSION v) { return std::to_string(v.major) + "." + std::to_string(v.minor); };
  return LibraryInfo{padded_field(info.manufacturerID, sizeof info.manufacturerID),
                     padded_field(info.libraryDescription, sizeof info.libraryDescription),
                     ver(info.libraryVersion), ver(info.cryptokiVersion)};
}

Module::~Module() {
  if (initialized_) api_->C_Finalize(nullptr);
  // The module stays mapped: some modules register atexit handlers that would dangle.
}

}  // namespace custody::p11
