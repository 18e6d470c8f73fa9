#include "daemon/transport/connection_budget.h"

namespace custody::transport {

ConnectionBudget::Verdict ConnectionBudget::admit(PeerKey uid) {
  if (open_ >= total_) return Verdict::listener_full;
  auto& mine = by_uid_[uid];
  if (mine >= per_uid_) return Verdict::uid_full;
  ++mine;
  ++open_;
  return Verdict::admitted;
}

void ConnectionBudget::release(PeerKey uid) {
  auto it = by_uid_.find(uid);
  if (it == by_uid_.end() || it->second == 0) return;
  --open_;
  if (--it->second == 0) by_uid_.erase(it);
}

unsigned ConnectionBudget::open_for(PeerKey uid) const {
  auto it = by_uid_.find(uid);
  return it == by_uid_.end() ? 0 : it->second;
}

}  // namespace custody::transport
