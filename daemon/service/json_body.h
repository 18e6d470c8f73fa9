#pragma once
// Request bodies: bounded JSON parsing into memory that is wiped when freed (bodies carry
// plaintext and keys in base64), and typed field readers that name the field in every error.
#include <boost/json.hpp>
#include <cstdint>
#include <initializer_list>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "common/secure_buffer.h"
#include "daemon/core/error.h"

namespace custody::service {

// Storage for JSON values holding secrets: every block is wiped before it is freed.
boost::json::storage_ptr zeroizing_storage();

// Base64 of a secret, held in zeroizing storage.
boost::json::string secret_base64(std::span<const std::uint8_t> data);

core::Outcome<boost::json::object> parse_body(std::string_view body, unsigned max_depth);

class Fields {
 public:
  Fields(const boost::json::object& object, std::string where = "") : object_(object), where_(std::move(where)) {}

  // Refuses members not in `allowed`, naming the first one.
  core::Outcome<void> only(std::initializer_list<std::string_view> allowed) const;
  const boost::json::value* get(std::string_view name) const { return object_.if_contains(name); }

  core::Outcome<SecureBytes> base64(std::string_view name, std::size_t min, std::size_t max, bool required = true) const;
  core::Outcome<std::optional<std::uint64_t>> number(std::string_view name, std::uint64_t min, std::uint64_t max) const;
  core::Outcome<bool> boolean(std::string_view name, bool fallback) const;
  core::Outcome<std::string> string(std::string_view name) const;

 private:
  std::string name_of(std::string_view field) const { return where_ + std::string(field); }
  const boost::json::object& object_;
  std::string where_;
};

}  // namespace custody::service
