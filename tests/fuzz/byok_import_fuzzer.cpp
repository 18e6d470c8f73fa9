// BYOK payloads (CONTRACT §8) as the import route hands them to ImportJobs::import: the size
// check and split of an RSA-OAEP (3072, SHA-1) + AES-KWP payload, and of an AES-KWP payload under a transport
// key, down to the unwrap calls in a real SoftHSMv2 token (the split is not separable from
// them). Also the create-import-job parameters as a proposal validates them. Input: byte 0 the
// mode, byte 1 the KCV choice, the rest the payload or the params JSON. Nothing random can be a
// valid wrapped key, so every import must be refused with a client error, and leave the job
// usable.
#include <cstdint>
#include <optional>
#include <string>

#include "daemon/service/json_body.h"
#include "tests/fuzz/daemon_harness.h"

using namespace custody;
using fuzz::check;

namespace {

void import_into(const std::string& job, std::span<const std::uint8_t> payload, std::uint8_t kcv_choice) {
  auto& h = fuzz::DaemonHarness::get();
  std::optional<std::string> kcv;
  if (kcv_choice & 1) kcv = "0A1B2C";
  auto result = h.jobs->import(job, payload, kcv);
  if (result) return;  // 2^-64 for KWP's integrity check; not an error either way
  const auto code = result.error().code;
  check(code == core::Code::invalid_argument || code == core::Code::invalid_ciphertext ||
            code == core::Code::failed_precondition,
        "a bad payload is a client error, not " + std::string(core::code_name(code)) + ": " + result.error().message);
  auto after = h.jobs->get(job);
  check(after && after->state == "active", "a refused import leaves the job usable");
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  fuzz::DaemonHarness::get();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  auto& h = fuzz::DaemonHarness::get();
  std::span<const std::uint8_t> rest(data + 2, size - 2);
  switch (data[0] % 3) {
    case 0: import_into(h.rsa_job, rest, data[1]); break;
    case 1: import_into(h.kwp_job, rest, data[1]); break;
    case 2: {
      auto params = service::parse_body(std::string_view(reinterpret_cast<const char*>(rest.data()), rest.size()), 16);
      if (!params) break;
      auto ok = h.jobs->validate(*params);
      if (!ok) check(ok.error().code == core::Code::invalid_argument, "bad params are invalid_argument");
      break;
    }
  }
  return 0;
}
