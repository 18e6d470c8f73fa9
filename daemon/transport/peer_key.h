#pragma once
// Who a budget, a turn or a rate belongs to: a uid on the Unix sockets, a network address on the
// TCP listener. The two never collide: a uid is below 2^32, an address key has a high bit set.
#include <sys/types.h>

#include <cstdint>

namespace custody::transport {

using PeerKey = std::uint64_t;

inline PeerKey peer_key_for_uid(uid_t uid) { return uid; }
inline constexpr PeerKey kIpv4PeerKey = PeerKey{1} << 62;
inline constexpr PeerKey kIpv6PeerKey = PeerKey{1} << 63;

}  // namespace custody::transport
