#include "daemon/kms/healthz_probe.h"

#include <algorithm>
#include <cstring>

#include "daemon/service/request.h"

namespace custody::kms {
namespace {

constexpr char kProbeMessage[] = "custody kms v2 healthz probe";
// How long a failed probe's answer is reused (never longer than the healthz interval).
constexpr auto kFailureReuse = std::chrono::seconds(1);

}  // namespace

std::optional<core::Error> HealthzProbe::probe(const core::Peer& peer, core::AuditFacts& facts) {
  const std::span<const std::uint8_t> message(reinterpret_cast<const std::uint8_t*>(kProbeMessage),
                                              sizeof kProbeMessage - 1);
  auto outcome = runner_.run<bool>([&]() -> core::Outcome<bool> {
    auto sealed = data_plane_.wrap(peer, key_, message, {}, facts);
    if (!sealed) return unexpected(sealed.error());
    auto opened = data_plane_.unwrap(peer, key_, sealed->ciphertext, {}, facts);
    if (!opened) return unexpected(opened.error());
    if (opened->plaintext.size() != message.size() ||
        !std::equal(message.begin(), message.end(), opened->plaintext.begin()))
      return core::fail(core::Code::internal, "the token's unwrap did not return what it wrapped");
    return true;
  });
  if (!outcome) return outcome.error();
  return std::nullopt;
}

std::string HealthzProbe::healthz(const core::Peer& peer) {
  std::lock_guard lock(mutex_);
  const auto now = Clock::now();
  if (last_ok_ && now - *last_ok_ < interval_) return "ok";
  if (last_failure_at_ && now - *last_failure_at_ < std::min<Clock::duration>(kFailureReuse, interval_))
    return last_failure_;

  core::AuditFacts facts;
  std::optional<core::Error> failed;
  if (!audit_.accepting()) failed = core::Error{core::Code::unavailable, "the audit log cannot be written"};
  else failed = probe(peer, facts);

  core::AuditEvent record;
  record.type = "kms.healthz";
  record.request_id = service::choose_request_id("");
  record.client = peer;
  record.result = failed ? core::code_name(failed->code) : "ok";
  record.key = key_;
  record.version = facts.version;
  record.context_sha256 = facts.context_sha256;
  // Every probe is audited like a wrap (at most one per interval, or per second while failing);
  // health the daemon could not record is not reported as ok.
  if (!audit_.write({record}) && !failed)
    failed = core::Error{core::Code::unavailable, "the audit log cannot be written"};

  if (!failed) {
    last_ok_ = Clock::now();
    last_failure_at_.reset();
    return "ok";
  }
  last_ok_.reset();
  last_failure_at_ = Clock::now();
  last_failure_ = std::string(core::code_name(failed->code)) + ": " + failed->message;
  return last_failure_;
}

}  // namespace custody::kms
