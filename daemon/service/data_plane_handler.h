#pragma once
// The shape every data-plane route shares: a key name in the path, a body that is one item or
// {"batch": [item, ...]} (1..256), each item authorized, run and audited on its own.
#include <functional>
#include <string>
#include <vector>

#include "daemon/core/keys/data_plane.h"
#include "daemon/service/context.h"
#include "daemon/service/json_body.h"
#include "daemon/service/router.h"

namespace custody::service {

inline constexpr std::size_t kMaxBatchItems = 256;
// The longest blob a wrap can produce: header with a 63-byte name, 8192 bytes, tag.
inline constexpr std::size_t kMaxBlob = 4 + 1 + 63 + 4 + 12 + core::kMaxWrapPlaintext + 16;

using ItemHandler = std::function<core::Outcome<boost::json::object>(const std::string& key_name, const Fields& item,
                                                                     const core::Peer& peer, core::AuditFacts& facts)>;

Handler data_plane_handler(ServiceContext& context, core::Operation operation, std::vector<std::string> fields,
                           ItemHandler item);

Handler make_wrap_handler(ServiceContext& context);
Handler make_unwrap_handler(ServiceContext& context);
Handler make_datakey_handler(ServiceContext& context);
Handler make_rewrap_handler(ServiceContext& context);
Handler make_derive_handler(ServiceContext& context);

}  // namespace custody::service
