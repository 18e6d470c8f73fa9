#pragma once
// The caller's encryption context (CONTRACT §3) and its canonical byte encoding (CONTRACT §4):
// u16be n || for each pair sorted by key bytes: u16be len(key) || key || u16be len(value) || value.
#include <boost/json/value.hpp>
#include <map>
#include <string>

#include "common/secure_buffer.h"
#include "daemon/core/error.h"

namespace custody::core {

// std::map<std::string> orders by bytes (char_traits compares as unsigned char).
using EncryptionContext = std::map<std::string, std::string>;

inline constexpr std::size_t kMaxContextPairs = 32;
inline constexpr std::size_t kMaxContextKey = 128;
inline constexpr std::size_t kMaxContextValue = 1024;

// From the request's "context" member; a missing or null member is the empty context.
Outcome<EncryptionContext> parse_context(const boost::json::value* v);
Bytes encode_context(const EncryptionContext& ctx);

}  // namespace custody::core
