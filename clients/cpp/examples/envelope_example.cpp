// Envelope encryption with custody::client: a fresh data key (DEK) per file from custody, the file
// encrypted locally with AES-256-GCM (OpenSSL), and the DEK stored beside the data wrapped by a
// root key that never leaves the token. Decrypting asks custody to unwrap the DEK.
//
//   custody_envelope_example [--socket PATH] KEY encrypt IN OUT
//   custody_envelope_example [--socket PATH] KEY decrypt IN OUT
//
// File format (all of it before the ciphertext is the GCM AAD, so no part can be swapped):
//   "CENV" 0x01 || u16be n || wrapped DEK (n bytes: custody's base64 ciphertext)
//   || iv (12 bytes) || AES-256-GCM ciphertext || tag (16 bytes)
// The DEK is wrapped under the encryption context {"purpose": "envelope-example"}.
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include "custody/client.h"

namespace {

using custody::SecureBytes;
using custody::client::Client;
using custody::client::ClientOptions;
using custody::client::Context;

constexpr char kMagic[] = {'C', 'E', 'N', 'V', 0x01};
constexpr std::size_t kIv = 12, kTag = 16;
const Context kContext{{"purpose", "envelope-example"}};

struct CipherCtxFree {
  void operator()(EVP_CIPHER_CTX* c) const { EVP_CIPHER_CTX_free(c); }
};
using CipherCtx = std::unique_ptr<EVP_CIPHER_CTX, CipherCtxFree>;

int fail(const std::string& message) {
  std::cerr << "envelope_example: " << message << '\n';
  return 1;
}

bool read_file(const std::string& path, std::vector<unsigned char>& out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  out.assign(std::istreambuf_iterator<char>(in), {});
  return !in.bad();
}

bool write_file(const std::string& path, const std::vector<unsigned char>& data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(data.data()), static_cast<std::streamsize>(data.size()));
  out.close();
  return static_cast<bool>(out);
}

// AES-256-GCM over data with aad; encrypt appends the tag, decrypt checks and strips it.
bool gcm(bool encrypt, const SecureBytes& key, const unsigned char* iv, const std::vector<unsigned char>& aad,
         const unsigned char* data, std::size_t size, std::vector<unsigned char>& out) {
  CipherCtx ctx(EVP_CIPHER_CTX_new());
  if (!ctx || key.size() != 32) return false;
  if (encrypt ? EVP_EncryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, key.data(), iv) != 1
              : EVP_DecryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, key.data(), iv) != 1)
    return false;
  int n = 0;
  auto update = encrypt ? EVP_EncryptUpdate : EVP_DecryptUpdate;
  if (update(ctx.get(), nullptr, &n, aad.data(), static_cast<int>(aad.size())) != 1) return false;
  const std::size_t start = out.size();
  out.resize(start + size + kTag);
  if (update(ctx.get(), out.data() + start, &n, data, static_cast<int>(size)) != 1) return false;
  std::size_t written = static_cast<std::size_t>(n);
  if (encrypt) {
    if (EVP_EncryptFinal_ex(ctx.get(), out.data() + start + written, &n) != 1) return false;
    written += static_cast<std::size_t>(n);
    if (EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, kTag, out.data() + start + written) != 1) return false;
    out.resize(start + written + kTag);
    return true;
  }
  // decrypt: the tag follows the data in the input.
  if (EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, kTag, const_cast<unsigned char*>(data + size)) != 1) return false;
  if (EVP_DecryptFinal_ex(ctx.get(), out.data() + start + written, &n) != 1) return false;
  out.resize(start + written + static_cast<std::size_t>(n));
  return true;
}

int encrypt_file(Client& custody, const std::string& key, const std::string& in_path, const std::string& out_path) {
  std::vector<unsigned char> plain;
  if (!read_file(in_path, plain)) return fail("cannot read " + in_path);
  // One request gives both halves: the DEK to use now (wiped when dk goes) and its wrapped form to keep.
  auto dk = custody.datakey(key, 32, kContext);
  if (!dk) return fail("datakey: " + dk.error().describe());
  const std::string& wrapped = dk->ciphertext;
  std::vector<unsigned char> out(std::begin(kMagic), std::end(kMagic));
  out.push_back(static_cast<unsigned char>(wrapped.size() >> 8));
  out.push_back(static_cast<unsigned char>(wrapped.size() & 0xff));
  out.insert(out.end(), wrapped.begin(), wrapped.end());
  unsigned char iv[kIv];
  if (RAND_bytes(iv, sizeof iv) != 1) return fail("no random IV");
  out.insert(out.end(), iv, iv + kIv);
  const std::vector<unsigned char> aad = out;
  if (!gcm(true, dk->plaintext, iv, aad, plain.data(), plain.size(), out)) return fail("AES-256-GCM encryption failed");
  if (!write_file(out_path, out)) return fail("cannot write " + out_path);
  std::cout << "encrypted " << plain.size() << " bytes under a data key wrapped by " << key << " v" << dk->key_version
            << '\n';
  return 0;
}

int decrypt_file(Client& custody, const std::string& key, const std::string& in_path, const std::string& out_path) {
  std::vector<unsigned char> in;
  if (!read_file(in_path, in)) return fail("cannot read " + in_path);
  const std::size_t fixed = sizeof kMagic + 2;
  if (in.size() < fixed || std::memcmp(in.data(), kMagic, sizeof kMagic) != 0) return fail("not an envelope file");
  const std::size_t n = (std::size_t{in[5]} << 8) | in[6];
  if (in.size() < fixed + n + kIv + kTag) return fail("the envelope file is truncated");
  const std::string wrapped(in.begin() + fixed, in.begin() + fixed + n);
  const std::size_t header = fixed + n + kIv;
  auto dek = custody.unwrap(key, wrapped, kContext);
  if (!dek) return fail("unwrap: " + dek.error().describe());
  const std::vector<unsigned char> aad(in.begin(), in.begin() + header);
  std::vector<unsigned char> plain;
  if (!gcm(false, dek->plaintext, in.data() + fixed + n, aad, in.data() + header, in.size() - header - kTag, plain))
    return fail("the file does not decrypt: it was altered or made with another data key");
  if (!write_file(out_path, plain)) return fail("cannot write " + out_path);
  std::cout << "decrypted " << plain.size() << " bytes\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  ClientOptions options;  // the socket: CUSTODY_SERVICE_SOCKET, else /run/custody/service.sock
  if (args.size() >= 2 && args[0] == "--socket") {
    options.socket_path = args[1];
    args.erase(args.begin(), args.begin() + 2);
  }
  if (args.size() != 4 || (args[1] != "encrypt" && args[1] != "decrypt")) {
    std::cerr << "usage: custody_envelope_example [--socket PATH] KEY encrypt|decrypt IN OUT\n";
    return 2;
  }
  Client custody(options);
  return args[1] == "encrypt" ? encrypt_file(custody, args[0], args[2], args[3])
                              : decrypt_file(custody, args[0], args[2], args[3]);
}
