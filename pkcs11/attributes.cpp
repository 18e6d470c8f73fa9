#include "pkcs11/attributes.h"

namespace custody::p11 {

AttributeTemplate& AttributeTemplate::add_raw(CK_ATTRIBUTE_TYPE type, const void* value,
                                              std::size_t len) {
  auto* p = static_cast<const std::uint8_t*>(value);
  SecureBytes& slot = storage_.emplace_back(p, p + len);
  attrs_.push_back(CK_ATTRIBUTE{type, slot.data(), static_cast<CK_ULONG>(slot.size())});
  return *this;
}

AttributeTemplate& AttributeTemplate::add_bool(CK_ATTRIBUTE_TYPE type, bool value) {
  CK_BBOOL b = value ? CK_TRUE : CK_FALSE;
  return add_raw(type, &b, sizeof b);
}

AttributeTemplate& AttributeTemplate::add_ulong(CK_ATTRIBUTE_TYPE type, CK_ULONG value) {
  return add_raw(type, &value, sizeof value);
}

AttributeTemplate& AttributeTemplate::add_bytes(CK_ATTRIBUTE_TYPE type,
                                                std::span<const std::uint8_t> value) {
  return add_raw(type, value.data(), value.size());
}

AttributeTemplate& AttributeTemplate::add_string(CK_ATTRIBUTE_TYPE type, std::string_view value) {
  return add_raw(type, value.data(), value.size());
}

AttributeTemplate& AttributeTemplate::add_template(CK_ATTRIBUTE_TYPE type, AttributeTemplate& inner) {
  return add_raw(type, inner.data(), inner.size() * sizeof(CK_ATTRIBUTE));
}

}  // namespace custody::p11
