#pragma once
// The TCP listener's own parts: the address to bind, TLS (server certificate and key from files,
// TLS 1.2+ with forward-secret AES-256-GCM / ChaCha20-Poly1305 suites only, optional client
// certificates checked against a CA and an accepted subject), and the peer key of an address.
// Framing, limits and budgets are the Server's, shared with the Unix sockets.
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "common/expected.h"
#include "daemon/transport/peer_key.h"

namespace custody::transport {

struct TlsSpec {
  std::string certificate_file;  // PEM chain, leaf first
  std::string private_key_file;  // PEM
  std::optional<std::string> client_ca_file;  // set: clients must present a certificate it signed
  // With client_ca_file: the client certificate's subject must contain this (e.g. "CN=kms"); empty: any.
  std::string accepted_client_subject;
};

struct TcpSpec {
  std::string address = "127.0.0.1";
  std::uint16_t port = 0;  // 0: any free port (tests); the bound one is reported by the Server
  std::optional<TlsSpec> tls;  // nullopt: plain HTTP (behind a TLS-terminating load balancer)
};

// Which of the spec's files a TLS set-up failure is about (none: OpenSSL itself refused a setting),
// so that `custodyd --check-config` can name the setting to fix.
enum class TlsFile { none, certificate, private_key, client_ca };
struct TlsProblem {
  TlsFile file = TlsFile::none;
  std::string message;  // names the file and OpenSSL's reason
};

// A server TLS context for spec. Every failure (unreadable file, key not matching the certificate,
// bad CA file) is an error naming the file.
Expected<std::shared_ptr<boost::asio::ssl::context>, TlsProblem> build_tls_context(const TlsSpec& spec);
// The same, the problem as its message (start-up and SIGHUP reload).
Expected<std::shared_ptr<boost::asio::ssl::context>, std::string> make_tls_context(const TlsSpec& spec);

// Binds and listens. An address that does not parse or cannot be bound is an error.
Expected<void, std::string> open_tcp_listener(boost::asio::ip::tcp::acceptor& acceptor, const TcpSpec& spec);

// IPv4: the address itself; IPv6: its /64 (one site's addresses share a budget).
PeerKey peer_key_for_address(const boost::asio::ip::address& address);

// The subject of a verified peer certificate as one line ("CN=kms,O=..."), or empty.
std::string peer_certificate_subject(SSL* ssl);
// Whether `accepted` (RFC 2253 text, e.g. "CN=kms-proxy,O=Example") names whole RDNs of the
// subject: it starts the subject or follows an unescaped comma, and ends it or precedes one. A
// plain substring would let "CN=kms" accept "CN=kms-evil".
bool subject_has_rdns(std::string_view subject, std::string_view accepted);

}  // namespace custody::transport
