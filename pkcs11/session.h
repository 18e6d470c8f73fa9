#pragma once
// An open PKCS#11 session (RAII) and the calls custody makes on it. A Session is used by one
// thread at a time (DESIGN invariant 5); the SessionPool hands them out.
#include <cstdint>
#include <optional>
#include <span>
#include <unordered_map>
#include <vector>

#include "common/secure_buffer.h"
#include "pkcs11/attributes.h"
#include "pkcs11/error.h"

namespace custody::p11 {

class Session {
 public:
  static Result<Session> open(CK_FUNCTION_LIST* api, CK_SLOT_ID slot);
  Session(Session&& other) noexcept;
  Session& operator=(Session&& other) noexcept;
  ~Session();

  CK_SESSION_HANDLE handle() const { return handle_; }
  CK_FUNCTION_LIST* api() const { return api_; }

  Status login_user(std::string_view pin);

  Result<CK_OBJECT_HANDLE> generate_key(CK_MECHANISM_TYPE mechanism, AttributeTemplate& tmpl);
  Result<std::pair<CK_OBJECT_HANDLE, CK_OBJECT_HANDLE>> generate_key_pair(
      CK_MECHANISM_TYPE mechanism, AttributeTemplate& public_tmpl, AttributeTemplate& private_tmpl);
  Result<CK_OBJECT_HANDLE> create_object(AttributeTemplate& tmpl);
  Result<CK_OBJECT_HANDLE> copy_object(CK_OBJECT_HANDLE object, AttributeTemplate& tmpl);
  Result<CK_OBJECT_HANDLE> unwrap_key(CK_MECHANISM& mechanism, CK_OBJECT_HANDLE unwrapping_key,
                                      std::span<const std::uint8_t> wrapped, AttributeTemplate& tmpl);
  Status destroy_object(CK_OBJECT_HANDLE object);
  Result<std::vector<CK_OBJECT_HANDLE>> find_objects(AttributeTemplate& tmpl, std::size_t max);
  // Every matching object, however many: C_FindObjects is called until it returns none.
  Result<std::vector<CK_OBJECT_HANDLE>> find_all(AttributeTemplate& tmpl);
  // The one object matching tmpl; Fault::not_found when there is none, Fault::not_unique when
  // there is more than one (a copy of a key: never to be taken for "missing").
  Result<CK_OBJECT_HANDLE> find_one(AttributeTemplate& tmpl, const std::string& what);

  // Boolean attributes; nullopt where the token does not report one.
  Result<std::unordered_map<CK_ATTRIBUTE_TYPE, std::optional<bool>>> get_bools(
      CK_OBJECT_HANDLE object, std::span<const CK_ATTRIBUTE_TYPE> types);
  // One variable-length attribute; nullopt when unavailable.
  Result<std::optional<Bytes>> get_bytes(CK_OBJECT_HANDLE object, CK_ATTRIBUTE_TYPE type);

  // Single-part operations. size_hint avoids the sizing round trip when the caller knows the
  // output length; a short buffer is retried with the size the token asks for.
  Result<SecureBytes> encrypt(CK_MECHANISM& mechanism, CK_OBJECT_HANDLE key,
                              std::span<const std::uint8_t> in, std::size_t size_hint);
  Result<SecureBytes> decrypt(CK_MECHANISM& mechanism, CK_OBJECT_HANDLE key,
                              std::span<const std::uint8_t> in, std::size_t size_hint);
  Result<SecureBytes> sign(CK_MECHANISM& mechanism, CK_OBJECT_HANDLE key,
                           std::span<const std::uint8_t> in, std::size_t size_hint);
  Status generate_random(std::span<std::uint8_t> out);

 private:
  Session(CK_FUNCTION_LIST* api, CK_SESSION_HANDLE handle) : api_(api), handle_(handle) {}
  void close() noexcept;
  CK_FUNCTION_LIST* api_ = nullptr;
  CK_SESSION_HANDLE handle_ = CK_INVALID_HANDLE;
};

}  // namespace custody::p11
