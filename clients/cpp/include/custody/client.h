#pragma once
// custody::client — the service socket's operations (CONTRACT §3) as typed calls with errors as
// values. One Client holds one kept-alive connection and is not thread-safe: give each thread its
// own (they are cheap; the daemon multiplexes connections).
//
// Retries: a call the daemon may have counted is never repeated behind the caller's back. wrap,
// datakey and rewrap (single and batch) count usage toward a key's rotation limit and audit each
// call, so they are sent once; on failure Error::retryable() / outcome_unknown() tell the caller
// what is safe. unwrap, derive, keys, health and attestation repeat no state change, so they are
// retried up to ClientOptions::max_attempts when nothing reached the daemon, on 429, and on 503
// with Retry-After (waiting what the daemon asks, capped by max_retry_wait).
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/secure_buffer.h"
#include "custody/client_error.h"
#include "custody/unix_http_client.h"

namespace custody::client {

// The socket: env CUSTODY_SERVICE_SOCKET, else /run/custody/service.sock (CONTRACT §1).
std::string default_service_socket();

struct ClientOptions {
  std::string socket_path = default_service_socket();
  std::chrono::milliseconds timeout{30000};  // the whole of one attempt: connect, send, answer
  unsigned max_attempts = 3;                 // for the calls that are safe to repeat
  std::chrono::milliseconds max_retry_wait{2000};
  TransportLimits limits;
  std::string user_agent = "custody-cpp-client";
};

// Encryption context (CONTRACT §3): the same pairs must be given to unwrap/rewrap as to wrap.
using Context = std::map<std::string, std::string>;

struct Wrapped {
  std::string ciphertext;  // base64 of the CONTRACT §4 blob
  std::uint32_t key_version = 0;
};
struct Unwrapped {
  SecureBytes plaintext;
  std::uint32_t key_version = 0;
};
struct DataKey {
  SecureBytes plaintext;   // empty when include_plaintext was false
  std::string ciphertext;  // the wrapped DEK, base64: store it beside the data
  std::uint32_t key_version = 0;
};
struct DerivedKey {
  SecureBytes key;
  std::uint32_t key_version = 0;
};

struct KeyVersionInfo {
  std::uint32_t version = 0;
  std::string state, origin, created_at;
  std::optional<std::string> kcv;
};
struct KeyInfo {
  std::string name, algorithm, state;
  std::uint32_t current_version = 0;
  std::uint32_t min_decrypt_version = 0;
  std::vector<KeyVersionInfo> versions;
  std::string policy_json;  // the policy as the daemon sent it
};

struct Health {
  std::string status;  // ok, degraded or unavailable
  int http_status = 0;
  bool token_available = false;
  bool audit_writable = false;
  std::string body;  // the whole JSON document
};

// An attestation envelope (CONTRACT §6) and what checking it found.
struct Attestation {
  std::string report;  // the exact signed bytes (a JSON document)
  Bytes signature;     // DER ECDSA-P256-SHA256 over report
  std::string public_key;  // PEM, as the daemon sent it
  std::string key_id;
  std::string nonce;  // base64, the one sent
  bool signature_ok = false;
  bool checked_with_pinned_key = false;
  bool nonce_ok = false;  // the report echoes the nonce sent
  bool trusted() const { return signature_ok && nonce_ok; }
};
struct AttestOptions {
  std::optional<Bytes> nonce;  // 0..64 bytes; default 32 fresh random bytes
  std::vector<std::string> keys;
  // The daemon's attestation public key (PEM) known beforehand; without it the report is checked
  // with the key it carries, which proves integrity but not who made it.
  std::optional<std::string> pinned_public_key;
};

// Batch items (CONTRACT §3: 1..256 per call, each authorized and audited on its own).
struct WrapItem {
  std::span<const std::uint8_t> plaintext;
  Context context;
};
struct UnwrapItem {
  std::string ciphertext;
  Context context;
};
struct DataKeyItem {
  unsigned length = 32;
  Context context;
  bool include_plaintext = true;
};
struct DeriveItem {
  std::span<const std::uint8_t> info;
  unsigned length = 32;
  std::optional<std::uint32_t> version;
};
// A batch answers in order; each item succeeded or failed by itself.
template <class T>
using BatchResult = Result<std::vector<Result<T>>>;

// A reply to a raw request: a 2xx status (others are Errors).
struct Reply {
  int status = 0;
  SecureString body;
  std::string request_id;
};

class Client {
 public:
  explicit Client(ClientOptions options = {});
  ~Client();
  Client(Client&&) noexcept;
  Client& operator=(Client&&) noexcept;

  Result<Wrapped> wrap(std::string_view key, std::span<const std::uint8_t> plaintext, const Context& context = {});
  Result<Unwrapped> unwrap(std::string_view key, std::string_view ciphertext, const Context& context = {});
  Result<DataKey> datakey(std::string_view key, unsigned length = 32, const Context& context = {},
                          bool include_plaintext = true);
  Result<Wrapped> rewrap(std::string_view key, std::string_view ciphertext, const Context& context = {});
  Result<DerivedKey> derive(std::string_view key, std::span<const std::uint8_t> info, unsigned length = 32,
                            std::optional<std::uint32_t> version = std::nullopt);

  BatchResult<Wrapped> wrap_batch(std::string_view key, std::span<const WrapItem> items);
  BatchResult<Unwrapped> unwrap_batch(std::string_view key, std::span<const UnwrapItem> items);
  BatchResult<DataKey> datakey_batch(std::string_view key, std::span<const DataKeyItem> items);
  BatchResult<Wrapped> rewrap_batch(std::string_view key, std::span<const UnwrapItem> items);
  BatchResult<DerivedKey> derive_batch(std::string_view key, std::span<const DeriveItem> items);

  Result<std::vector<KeyInfo>> keys();
  Result<KeyInfo> key(std::string_view name);
  // The health document, also when the daemon answers 503 with one (status "unavailable").
  Result<Health> health();

  // Fetches an envelope for a nonce and checks it; the result says what held (no error for a
  // report that does not verify: see attest for that).
  Result<Attestation> fetch_attestation(const AttestOptions& options = {});
  // fetch_attestation, and a verification_failed Error unless the signature and nonce both check.
  Result<Attestation> attest(const AttestOptions& options = {});

  // Any request on this socket (or, with a Client made for it, the admin socket); a non-2xx answer
  // is an Error carrying the daemon's code. replayable: may it be sent again after a failure.
  Result<Reply> request(std::string_view method, std::string_view target, std::string_view body = {},
                        bool replayable = false);

  const ClientOptions& options() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace custody::client
