#pragma once
// An attribute template whose value storage stays put while the CK_ATTRIBUTE array points into it.
#include <cstdint>
#include <deque>
#include <span>
#include <string_view>
#include <vector>

#include "common/secure_buffer.h"
#include "pkcs11/pkcs11.h"

namespace custody::p11 {

class AttributeTemplate {
 public:
  AttributeTemplate() = default;
  AttributeTemplate(const AttributeTemplate&) = delete;
  AttributeTemplate& operator=(const AttributeTemplate&) = delete;

  AttributeTemplate& add_bool(CK_ATTRIBUTE_TYPE type, bool value);
  AttributeTemplate& add_ulong(CK_ATTRIBUTE_TYPE type, CK_ULONG value);
  AttributeTemplate& add_bytes(CK_ATTRIBUTE_TYPE type, std::span<const std::uint8_t> value);
  AttributeTemplate& add_string(CK_ATTRIBUTE_TYPE type, std::string_view value);
  // An attribute whose value is a template (CKA_UNWRAP_TEMPLATE, …). The values stay in `inner`,
  // which must outlive this template.
  AttributeTemplate& add_template(CK_ATTRIBUTE_TYPE type, AttributeTemplate& inner);

  CK_ATTRIBUTE* data() { return attrs_.data(); }
  CK_ULONG size() const { return static_cast<CK_ULONG>(attrs_.size()); }

 private:
  AttributeTemplate& add_raw(CK_ATTRIBUTE_TYPE type, const void* value, std::size_t len);
  std::deque<SecureBytes> storage_;
  std::vector<CK_ATTRIBUTE> attrs_;
};

}  // namespace custody::p11
