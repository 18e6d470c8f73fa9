#include "pkcs11/session.h"

namespace custody::p11 {
namespace {

using InitFn = CK_RV (*)(CK_SESSION_HANDLE, CK_MECHANISM*, CK_OBJECT_HANDLE);
using RunFn = CK_RV (*)(CK_SESSION_HANDLE, CK_BYTE*, CK_ULONG, CK_BYTE*, CK_ULONG*);

// Init + single-part call, as every C_Encrypt/C_Decrypt/C_Sign follows the same two-step shape.
Result<SecureBytes> single_part(CK_SESSION_HANDLE session, InitFn init, const char* init_name,
                                RunFn run, const char* run_name, CK_MECHANISM& mechanism,
                                CK_OBJECT_HANDLE key, std::span<const std::uint8_t> in,
                                std::size_t size_hint) {
  if (auto st = check(init(session, &mechanism, key), init_name); !st) return unexpected(st.error());
  SecureBytes out(size_hint);
  CK_ULONG len = out.size();
  auto* data = const_cast<CK_BYTE*>(in.data());
  CK_RV rv = run(session, data, in.size(), out.data(), &len);
  if (rv == CKR_BUFFER_TOO_SMALL) {
    out.resize(len);
    rv = run(session, data, in.size(), out.data(), &len);
  }
  if (auto st = check(rv, run_name); !st) return unexpected(st.error());
  out.resize(len);
  return out;
}

}  // namespace

Result<Session> Session::open(CK_FUNCTION_LIST* api, CK_SLOT_ID slot) {
  CK_SESSION_HANDLE h = CK_INVALID_HANDLE;
  if (auto st = check(api->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, nullptr, nullptr, &h),
                      "C_OpenSession");
      !st)
    return unexpected(st.error());
  return Session(api, h);
}

Session::Session(Session&& other) noexcept : api_(other.api_), handle_(other.handle_) {
  other.handle_ = CK_INVALID_HANDLE;
}

Session& Session::operator=(Session&& other) noexcept {
  if (this != &other) {
    close();
    api_ = other.api_;
    handle_ = other.handle_;
    other.handle_ = CK_INVALID_HANDLE;
  }
  return *this;
}

Session::~Session() { close(); }

void Session::close() noexcept {
  if (handle_ != CK_INVALID_HANDLE) api_->C_CloseSession(handle_);
  handle_ = CK_INVALID_HANDLE;
}

Status Session::login_user(std::string_view pin) {
  CK_RV rv = api_->C_Login(handle_, CKU_USER, reinterpret_cast<CK_UTF8CHAR*>(const_cast<char*>(pin.data())),
                           pin.size());
  if (rv == CKR_USER_ALREADY_LOGGED_IN) rv = CKR_OK;
  return check(rv, "C_Login");
}

Result<CK_OBJECT_HANDLE> Session::generate_key(CK_MECHANISM_TYPE mechanism, AttributeTemplate& tmpl) {
  CK_MECHANISM mech{mechanism, nullptr, 0};
  CK_OBJECT_HANDLE key = CK_INVALID_HANDLE;
  if (auto st = check(api_->C_GenerateKey(handle_, &mech, tmpl.data(), tmpl.size(), &key), "C_GenerateKey"); !st)
    return unexpected(st.error());
  return key;
}

Result<std::pair<CK_OBJECT_HANDLE, CK_OBJECT_HANDLE>> Session::generate_key_pair(
    CK_MECHANISM_TYPE mechanism, AttributeTemplate& public_tmpl, AttributeTemplate& private_tmpl) {
  CK_MECHANISM mech{mechanism, nullptr, 0};
  CK_OBJECT_HANDLE pub = CK_INVALID_HANDLE, priv = CK_INVALID_HANDLE;
  if (auto st = check(api_->C_GenerateKeyPair(handle_, &mech, public_tmpl.data(), public_tmpl.size(),
                                              private_tmpl.data(), private_tmpl.size(), &pub, &priv),
                      "C_GenerateKeyPair");
      !st)
    return unexpected(st.error());
  return std::pair{pub, priv};
}

Result<CK_OBJECT_HANDLE> Session::create_object(AttributeTemplate& tmpl) {
  CK_OBJECT_HANDLE obj = CK_INVALID_HANDLE;
  if (auto st = check(api_->C_CreateObject(handle_, tmpl.data(), tmpl.size(), &obj), "C_CreateObject"); !st)
    return unexpected(st.error());
  return obj;
}

Result<CK_OBJECT_HANDLE> Session::copy_object(CK_OBJECT_HANDLE object, AttributeTemplate& tmpl) {
  CK_OBJECT_HANDLE copy = CK_INVALID_HANDLE;
  if (auto st = check(api_->C_CopyObject(handle_, object, tmpl.data(), tmpl.size(), &copy), "C_CopyObject"); !st)
    return unexpected(st.error());
  return copy;
}

Result<CK_OBJECT_HANDLE> Session::unwrap_key(CK_MECHANISM& mechanism, CK_OBJECT_HANDLE unwrapping_key,
                                             std::span<const std::uint8_t> wrapped, AttributeTemplate& tmpl) {
  CK_OBJECT_HANDLE key = CK_INVALID_HANDLE;
  if (auto st = check(api_->C_UnwrapKey(handle_, &mechanism, unwrapping_key, const_cast<CK_BYTE*>(wrapped.data()),
                                        wrapped.size(), tmpl.data(), tmpl.size(), &key),
                      "C_UnwrapKey");
      !st)
    return unexpected(st.error());
  return key;
}

Status Session::destroy_object(CK_OBJECT_HANDLE object) {
  return check(api_->C_DestroyObject(handle_, object), "C_DestroyObject");
}

Result<std::vector<CK_OBJECT_HANDLE>> Session::find_objects(AttributeTemplate& tmpl, std::size_t max) {
  if (auto st = check(api_->C_FindObjectsInit(handle_, tmpl.data(), tmpl.size()), "C_FindObjectsInit"); !st)
    return unexpected(st.error());
  std::vector<CK_OBJECT_HANDLE> found(max);
  CK_ULONG count = 0;
  CK_RV rv = api_->C_FindObjects(handle_, found.data(), max, &count);
  // Always end the search, or the session stays busy with it.
  CK_RV final_rv = api_->C_FindObjectsFinal(handle_);
  if (auto st = check(rv, "C_FindObjects"); !st) return unexpected(st.error());
  if (auto st = check(final_rv, "C_FindObjectsFinal"); !st) return unexpected(st.error());
  found.resize(count);
  return found;
}

Result<std::vector<CK_OBJECT_HANDLE>> Session::find_all(AttributeTemplate& tmpl) {
  if (auto st = check(api_->C_FindObjectsInit(handle_, tmpl.data(), tmpl.size()), "C_FindObjectsInit"); !st)
    return unexpected(st.error());
  std::vector<CK_OBJECT_HANDLE> found;
  CK_RV rv = CKR_OK;
  // A faulty module that never says "no more" must not grow this without end.
  constexpr std::size_t kMaxObjects = 1'000'000;
  for (;;) {
    if (found.size() >= kMaxObjects) {
      (void)api_->C_FindObjectsFinal(handle_);
      return unexpected(own_fault(Fault::bad_reply, "C_FindObjects (more than a million objects)"));
    }
    // A token may hand out fewer than asked for while more remain: only an empty answer ends it.
    constexpr CK_ULONG kChunk = 1024;
    const std::size_t have = found.size();
    found.resize(have + kChunk);
    CK_ULONG count = 0;
    rv = api_->C_FindObjects(handle_, found.data() + have, kChunk, &count);
    found.resize(have + (rv == CKR_OK ? count : 0));
    if (rv != CKR_OK || count == 0) break;
  }
  CK_RV final_rv = api_->C_FindObjectsFinal(handle_);
  if (auto st = check(rv, "C_FindObjects"); !st) return unexpected(st.error());
  if (auto st = check(final_rv, "C_FindObjectsFinal"); !st) return unexpected(st.error());
  return found;
}

Result<CK_OBJECT_HANDLE> Session::find_one(AttributeTemplate& tmpl, const std::string& what) {
  auto found = find_objects(tmpl, 2);
  if (!found) return unexpected(found.error());
  if (found->empty()) return unexpected(own_fault(Fault::not_found, "find " + what));
  if (found->size() > 1) return unexpected(own_fault(Fault::not_unique, "find " + what));
  return (*found)[0];
}

Result<std::unordered_map<CK_ATTRIBUTE_TYPE, std::optional<bool>>> Session::get_bools(
    CK_OBJECT_HANDLE object, std::span<const CK_ATTRIBUTE_TYPE> types) {
  std::vector<CK_BBOOL> values(types.size(), CK_FALSE);
  std::vector<CK_ATTRIBUTE> attrs;
  for (std::size_t i = 0; i < types.size(); ++i) attrs.push_back({types[i], &values[i], sizeof(CK_BBOOL)});
  CK_RV rv = api_->C_GetAttributeValue(handle_, object, attrs.data(), attrs.size());
  // These two say that some attributes are missing; the rest are filled in.
  if (rv != CKR_ATTRIBUTE_TYPE_INVALID && rv != CKR_ATTRIBUTE_SENSITIVE) {
    if (auto st = check(rv, "C_GetAttributeValue"); !st) return unexpected(st.error());
  }
  std::unordered_map<CK_ATTRIBUTE_TYPE, std::optional<bool>> out;
  for (std::size_t i = 0; i < types.size(); ++i) {
    if (attrs[i].ulValueLen == CK_UNAVAILABLE_INFORMATION || attrs[i].ulValueLen != sizeof(CK_BBOOL))
      out[types[i]] = std::nullopt;
    else
      out[types[i]] = values[i] == CK_TRUE;
  }
  return out;
}

Result<std::optional<Bytes>> Session::get_bytes(CK_OBJECT_HANDLE object, CK_ATTRIBUTE_TYPE type) {
  CK_ATTRIBUTE attr{type, nullptr, 0};
  CK_RV rv = api_->C_GetAttributeValue(handle_, object, &attr, 1);
  if (rv == CKR_ATTRIBUTE_TYPE_INVALID || rv == CKR_ATTRIBUTE_SENSITIVE) return std::optional<Bytes>{};
  if (auto st = check(rv, "C_GetAttributeValue"); !st) return unexpected(st.error());
  if (attr.ulValueLen == CK_UNAVAILABLE_INFORMATION) return std::optional<Bytes>{};
  Bytes value(attr.ulValueLen);
  attr.pValue = value.data();
  if (auto st = check(api_->C_GetAttributeValue(handle_, object, &attr, 1), "C_GetAttributeValue"); !st)
    return unexpected(st.error());
  value.resize(attr.ulValueLen);
  return std::optional<Bytes>{std::move(value)};
}

Result<SecureBytes> Session::encrypt(CK_MECHANISM& mechanism, CK_OBJECT_HANDLE key,
                                     std::span<const std::uint8_t> in, std::size_t size_hint) {
  return single_part(handle_, api_->C_EncryptInit, "C_EncryptInit", api_->C_Encrypt, "C_Encrypt",
                     mechanism, key, in, size_hint);
}

Result<SecureBytes> Session::decrypt(CK_MECHANISM& mechanism, CK_OBJECT_HANDLE key,
                                     std::span<const std::uint8_t> in, std::size_t size_hint) {
  return single_part(handle_, api_->C_DecryptInit, "C_DecryptInit", api_->C_Decrypt, "C_Decrypt",
                     mechanism, key, in, size_hint);
}

Result<SecureBytes> Session::sign(CK_MECHANISM& mechanism, CK_OBJECT_HANDLE key,
                                  std::span<const std::uint8_t> in, std::size_t size_hint) {
  return single_part(handle_, api_->C_SignInit, "C_SignInit", api_->C_Sign, "C_Sign", mechanism, key,
                     in, size_hint);
}

Status Session::generate_random(std::span<std::uint8_t> out) {
  return check(api_->C_GenerateRandom(handle_, out.data(), out.size()), "C_GenerateRandom");
}

}  // namespace custody::p11
