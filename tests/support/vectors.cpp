#include "tests/support/vectors.h"

#include <fstream>
#include <map>
#include <stdexcept>

#include "common/hex.h"

namespace custody::test {
namespace {

std::string trim(const std::string& s) {
  auto b = s.find_first_not_of(" \t\r");
  auto e = s.find_last_not_of(" \t\r");
  return b == std::string::npos ? "" : s.substr(b, e - b + 1);
}

Bytes hex(const std::string& s) {
  auto b = hex_decode(s);
  if (!b) throw std::runtime_error("bad hex in vector file: " + s);
  return *b;
}

// Reads "Name = value" records, each starting at its COUNT/Count line; section headers "[K = V]" are
// attached to every record that follows them.
std::vector<std::map<std::string, std::string>> records(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot open vector file " + path + " (install python3-cryptography-vectors)");
  std::vector<std::map<std::string, std::string>> out;
  std::map<std::string, std::string> section, current;
  std::string line;
  auto flush = [&] {
    if (!current.empty()) {
      for (const auto& [k, v] : section) current.emplace(k, v);
      out.push_back(std::move(current));
    }
    current.clear();
  };
  while (std::getline(in, line)) {
    line = trim(line);
    if (line.empty() || line[0] == '#') continue;
    if (line[0] == '[') {
      flush();
      auto eq = line.find('=');
      if (eq != std::string::npos) section[trim(line.substr(1, eq - 1))] = trim(line.substr(eq + 1, line.size() - eq - 2));
      continue;
    }
    auto eq = line.find('=');
    if (eq == std::string::npos) {
      current[line] = "";
      continue;
    }
    auto key = trim(line.substr(0, eq));
    // Records start with a count line; blank lines inside a record (RFC 5869 file) are ignored.
    if (key == "COUNT" || key == "Count") flush();
    current[key] = trim(line.substr(eq + 1));
  }
  flush();
  return out;
}

}  // namespace

std::vector<GcmVector> nist_gcm256_vectors() {
  std::vector<GcmVector> out;
  for (auto& r : records(std::string(CUSTODY_VECTORS_DIR) + "/ciphers/AES/GCM/gcmEncryptExtIV256.rsp")) {
    if (r["IVlen"] != "96" || r["Taglen"] != "128" || !r.count("Key")) continue;
    out.push_back({hex(r["Key"]), hex(r["IV"]), hex(r["PT"]), hex(r["AAD"]), hex(r["CT"]), hex(r["Tag"])});
  }
  return out;
}

std::vector<HkdfVector> rfc5869_sha256_vectors() {
  std::vector<HkdfVector> out;
  for (auto& r : records(std::string(CUSTODY_VECTORS_DIR) + "/KDF/rfc-5869-HKDF-SHA256.txt")) {
    if (!r.count("PRK")) continue;
    out.push_back({hex(r["PRK"]), hex(r["info"]), hex(r["OKM"])});
  }
  return out;
}

}  // namespace custody::test
