// Admin challenge and approval decoding (CONTRACT §7) as the admin socket runs it: the approval
// body read like the approvals handler reads it (parse_body, then "operator" and "signature"),
// the strict base64, the DER ECDSA / RSA-PSS checks and OperatorSet::verify, the r||s to DER
// conversion of token signatures, and the operators' PEM keys. The operators are alice, bob
// (EC P-256) and carol (RSA 2048); their keys are made once, at start.
// Input: byte 0 picks the mode, byte 1 the operator, the rest is the mode's data.
#include <boost/json.hpp>
#include <cstdint>
#include <memory>
#include <string>

#include "cli/approval_signer.h"
#include "common/base64.h"
#include "common/ecdsa_der.h"
#include "common/pem.h"
#include "daemon/core/admin/operators.h"
#include "daemon/service/json_body.h"
#include "tests/fuzz/fuzz_check.h"
#include "tests/support/softhsm_token.h"

#include <openssl/ecdsa.h>

using namespace custody;
using fuzz::check;

namespace {

// A challenge as AdminRequests::propose writes it; the corpus has real ones for mode 2.
const std::string kChallenge =
    R"({"format":"custody.admin-request.v1","id":"5f0c1d2e3a4b5c6d7e8f901234567890","operation":"rotate-key",)"
    R"("params":{"name":"demo"},"created_at":"2026-01-01T00:00:00Z","expires_at":"2026-01-01T00:15:00Z",)"
    R"("nonce":"AAECAwQFBgcICQoLDA0ODw==","instance_id":"fuzz-instance"})";

struct Operators {
  test::TempDir dir;
  std::vector<std::string> names{"alice", "bob", "carol"};
  std::vector<std::string> key_files, pems;
  std::unique_ptr<core::OperatorSet> set;

  Operators() {
    std::vector<std::pair<std::string, std::string>> list;
    for (const auto& name : names) {
      const std::string key = dir.path() + "/" + name + ".key";
      const std::string algorithm = name == "carol" ? "RSA -pkeyopt rsa_keygen_bits:2048" : "EC -pkeyopt ec_paramgen_curve:P-256";
      if (test::run("openssl genpkey -algorithm " + algorithm + " -out " + key + " 2>/dev/null && openssl pkey -in " + key +
                    " -pubout -out " + key + ".pub 2>/dev/null") != 0)
        fuzz::broken("cannot make the operator keys");
      key_files.push_back(key);
      pems.push_back(test::read_file(key + ".pub"));
      list.emplace_back(name, pems.back());
    }
    auto s = core::OperatorSet::from_pem(list);
    if (!s) fuzz::broken("operators: " + s.error());
    set = std::make_unique<core::OperatorSet>(std::move(*s));
  }
};

Operators& operators() {
  static Operators* o = new Operators();
  return *o;
}

// A signature nobody made for this challenge must be refused, as malformed or as not verifying.
void must_refuse(const core::Operator& op, std::string_view challenge, std::span<const std::uint8_t> signature) {
  auto ok = core::OperatorSet::verify(op, challenge, signature);
  check(!ok, "a signature not made by " + op.name + " verifies");
  check(ok.error().code == core::Code::invalid_argument || ok.error().code == core::Code::permission_denied,
        "a bad signature is invalid_argument or permission_denied");
}

void approval_body(std::string_view body) {
  auto parsed = service::parse_body(body, 16);
  if (!parsed) return;
  service::Fields f(*parsed);
  if (!f.only({"operator", "signature"})) return;
  auto name = f.string("operator");
  auto signature_b64 = f.string("signature");
  if (!name || !signature_b64) return;
  const core::Operator* op = operators().set->find(*name);
  if (!op) return;
  auto signature = base64_decode(*signature_b64);
  if (!signature) return;
  check(base64_encode(*signature) == *signature_b64, "base64 decoding is strict: it re-encodes to the same text");
  must_refuse(*op, kChallenge, *signature);
}

void signed_challenge(const std::string& challenge, std::size_t who) {
  auto& ops = operators();
  auto signature = client::sign_with_key_file(ops.key_files[who], challenge);
  check(static_cast<bool>(signature), "the client signs any challenge");
  const core::Operator& op = ops.set->all()[who];
  auto ok = core::OperatorSet::verify(op, challenge, *signature);
  check(static_cast<bool>(ok), "the operator's own signature verifies");
  must_refuse(ops.set->all()[(who + 1) % ops.names.size()], challenge, *signature);
  must_refuse(op, challenge + "\n", *signature);
  Bytes changed = *signature;
  changed[changed.size() / 2] ^= 0x01;
  must_refuse(op, challenge, changed);
}

void raw_ecdsa(std::span<const std::uint8_t> raw, std::size_t who) {
  auto encoded = ecdsa_signature_der(raw);
  // Only an r || s that cannot be one (empty, odd, longer than P-521's) is refused.
  check(static_cast<bool>(encoded) == (!raw.empty() && raw.size() % 2 == 0 && raw.size() <= 132),
        "ecdsa_signature_der refuses exactly the impossible lengths");
  if (!encoded) return;
  const Bytes& der = *encoded;
  const unsigned char* p = der.data();
  ECDSA_SIG* sig = d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(der.size()));
  check(sig && p == der.data() + der.size(), "ecdsa_signature_der writes one whole DER signature");
  ECDSA_SIG_free(sig);
  must_refuse(operators().set->all()[who % 2], kChallenge, der);
}

void operator_pem(const std::string& pem) {
  auto one = core::OperatorSet::from_pem({{"x", pem}});
  if (!one) return;
  const core::Operator& op = one->all().at(0);
  check(op.key_id.size() == 64 && op.key_id.find_first_not_of("0123456789abcdef") == std::string::npos,
        "key_id is hex SHA-256");
  // One key is one operator, whatever its encoding: the daemon's own re-encoding is refused beside it.
  const std::string again = public_key_pem(op.key.get()).value();
  check(!core::OperatorSet::from_pem({{"x", pem}, {"y", again}}), "the same key listed twice passes");
  auto with_alice = core::OperatorSet::from_pem({{"x", pem}, {"alice", operators().pems[0]}});
  check(static_cast<bool>(with_alice) || op.key_id == operators().set->all()[0].key_id,
        "a different key beside alice's is refused");
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  operators();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  const std::size_t who = data[1] % operators().names.size();
  std::span<const std::uint8_t> rest(data + 2, size - 2);
  const std::string text(reinterpret_cast<const char*>(rest.data()), rest.size());
  switch (data[0] % 5) {
    case 0: approval_body(text); break;
    case 1: must_refuse(operators().set->all()[who], kChallenge, rest); break;
    case 2: signed_challenge(text, who); break;
    case 3: raw_ecdsa(rest, who); break;
    case 4: operator_pem(text); break;
  }
  return 0;
}
