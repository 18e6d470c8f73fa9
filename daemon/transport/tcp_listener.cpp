#include "daemon/transport/tcp_listener.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <cstring>

namespace custody::transport {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

namespace {

// TLS 1.2: ECDHE only (forward secrecy), AEAD only. TLS 1.3 suites are all forward-secret.
constexpr const char* kTls12Ciphers =
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";
constexpr const char* kTls13Suites = "TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256";

std::string openssl_reason() {
  const unsigned long e = ERR_get_error();
  ERR_clear_error();
  if (!e) return "unknown OpenSSL error";
  char text[256];
  ERR_error_string_n(e, text, sizeof text);
  return text;
}

}  // namespace

Expected<std::shared_ptr<asio::ssl::context>, TlsProblem> build_tls_context(const TlsSpec& spec) {
  auto problem = [](TlsFile file, std::string message) { return unexpected(TlsProblem{file, std::move(message)}); };
  auto context = std::make_shared<asio::ssl::context>(asio::ssl::context::tls_server);
  SSL_CTX* ctx = context->native_handle();
  if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1) return problem(TlsFile::none, "TLS: cannot require TLS 1.2: " + openssl_reason());
  if (SSL_CTX_set_cipher_list(ctx, kTls12Ciphers) != 1) return problem(TlsFile::none, "TLS: cipher list refused: " + openssl_reason());
  if (SSL_CTX_set_ciphersuites(ctx, kTls13Suites) != 1) return problem(TlsFile::none, "TLS: TLS 1.3 suites refused: " + openssl_reason());
  SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE |
                               SSL_OP_NO_TICKET);
  if (SSL_CTX_use_certificate_chain_file(ctx, spec.certificate_file.c_str()) != 1)
    return problem(TlsFile::certificate, "TLS: cannot use the certificate " + spec.certificate_file + ": " + openssl_reason());
  const auto key_mismatch = [&] {
    ERR_clear_error();
    return problem(TlsFile::private_key, "TLS: the private key " + spec.private_key_file +
                                             " does not match the certificate " + spec.certificate_file);
  };
  if (SSL_CTX_use_PrivateKey_file(ctx, spec.private_key_file.c_str(), SSL_FILETYPE_PEM) != 1) {
    // OpenSSL 3 compares the key with the certificate here already.
    if (ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH) return key_mismatch();
    return problem(TlsFile::private_key, "TLS: cannot use the private key " + spec.private_key_file + ": " + openssl_reason());
  }
  if (SSL_CTX_check_private_key(ctx) != 1) return key_mismatch();
  if (spec.client_ca_file) {
    if (SSL_CTX_load_verify_locations(ctx, spec.client_ca_file->c_str(), nullptr) != 1)
      return problem(TlsFile::client_ca, "TLS: cannot read the client CA " + *spec.client_ca_file + ": " + openssl_reason());
    STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(spec.client_ca_file->c_str());
    if (!names) return problem(TlsFile::client_ca, "TLS: no CA certificate in " + *spec.client_ca_file);
    SSL_CTX_set_client_CA_list(ctx, names);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
  }
  return context;
}

Expected<std::shared_ptr<asio::ssl::context>, std::string> make_tls_context(const TlsSpec& spec) {
  auto context = build_tls_context(spec);
  if (!context) return unexpected(std::move(context.error().message));
  return std::move(*context);
}

Expected<void, std::string> open_tcp_listener(tcp::acceptor& acceptor, const TcpSpec& spec) {
  boost::system::error_code ec;
  const auto address = asio::ip::make_address(spec.address, ec);
  if (ec) return unexpected("xks listener: '" + spec.address + "' is not an IP address");
  const tcp::endpoint endpoint(address, spec.port);
  const std::string where = spec.address + ":" + std::to_string(spec.port);
  if (acceptor.open(endpoint.protocol(), ec); ec) return unexpected("cannot open a socket for " + where + ": " + ec.message());
  if (acceptor.set_option(tcp::acceptor::reuse_address(true), ec); ec)
    return unexpected("cannot set SO_REUSEADDR on " + where + ": " + ec.message());
  if (acceptor.bind(endpoint, ec); ec) return unexpected("cannot bind " + where + ": " + ec.message());
  if (acceptor.listen(asio::socket_base::max_listen_connections, ec); ec)
    return unexpected("cannot listen on " + where + ": " + ec.message());
  return {};
}

PeerKey peer_key_for_address(const asio::ip::address& address) {
  if (address.is_v4()) return kIpv4PeerKey | address.to_v4().to_uint();
  if (address.to_v6().is_v4_mapped())
    return kIpv4PeerKey | asio::ip::make_address_v4(asio::ip::v4_mapped, address.to_v6()).to_uint();
  const auto bytes = address.to_v6().to_bytes();
  PeerKey prefix = 0;
  for (int i = 0; i < 8; ++i) prefix = (prefix << 8) | bytes[i];
  return kIpv6PeerKey | (prefix >> 1);
}

std::string peer_certificate_subject(SSL* ssl) {
  X509* cert = SSL_get1_peer_certificate(ssl);
  if (!cert) return {};
  std::string out;
  if (BIO* bio = BIO_new(BIO_s_mem())) {
    if (X509_NAME_print_ex(bio, X509_get_subject_name(cert), 0, XN_FLAG_RFC2253) >= 0) {
      char* data = nullptr;
      const long n = BIO_get_mem_data(bio, &data);
      if (n > 0 && data) out.assign(data, static_cast<std::size_t>(n));
    }
    BIO_free(bio);
  }
  X509_free(cert);
  return out;
}

bool subject_has_rdns(std::string_view subject, std::string_view accepted) {
  if (accepted.empty()) return false;
  // An RDN boundary: the subject's start or end, or a comma that no backslash escapes.
  auto unescaped_comma_at = [&](std::size_t i) {
    if (subject[i] != ',') return false;
    std::size_t backslashes = 0;
    while (backslashes < i && subject[i - 1 - backslashes] == '\\') ++backslashes;
    return backslashes % 2 == 0;
  };
  for (std::size_t at = subject.find(accepted); at != std::string_view::npos; at = subject.find(accepted, at + 1)) {
    const std::size_t end = at + accepted.size();
    const bool starts = at == 0 || unescaped_comma_at(at - 1);
    const bool ends = end == subject.size() || unescaped_comma_at(end);
    if (starts && ends) return true;
  }
  return false;
}

}  // namespace custody::transport
