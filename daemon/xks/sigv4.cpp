#include "daemon/xks/sigv4.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cstdlib>

namespace custody::xks {

namespace {

constexpr std::string_view kAlgorithm = "AWS4-HMAC-SHA256";
constexpr std::size_t kMaxSignedHeaders = 32;

std::string hex(const unsigned char* data, std::size_t n) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out(n * 2, '\0');
  for (std::size_t i = 0; i < n; ++i) {
    out[2 * i] = digits[data[i] >> 4];
    out[2 * i + 1] = digits[data[i] & 0xf];
  }
  return out;
}

std::string sha256_hex(std::string_view data) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), digest);
  return hex(digest, sizeof digest);
}

using Mac = std::array<unsigned char, 32>;

Mac hmac(std::string_view key, std::string_view message) {
  Mac out{};
  unsigned int length = 0;
  // HMAC-SHA256 with in-memory inputs cannot fail short of memory exhaustion; a failure leaves
  // the zero MAC, which matches no signature (CRYPTO_memcmp over the hex below).
  if (!HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), reinterpret_cast<const unsigned char*>(message.data()),
            message.size(), out.data(), &length))
    out.fill(0);
  return out;
}

std::string_view as_view(const Mac& m) { return {reinterpret_cast<const char*>(m.data()), m.size()}; }

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// SigV4 header values: trimmed, and every run of spaces inside collapsed to one.
std::string collapse_spaces(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  bool space = false;
  for (char c : trim(v)) {
    if (c == ' ' || c == '\t') {
      space = true;
      continue;
    }
    if (space) out.push_back(' ');
    space = false;
    out.push_back(c);
  }
  return out;
}

bool unreserved(unsigned char c) { return std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~'; }

// The path URI-encoded once more, as SigV4 asks of every service but S3: the bytes as sent, with
// everything outside the unreserved set and '/' percent-encoded (so "%2F" becomes "%252F").
std::string canonical_uri(std::string_view path) {
  static constexpr char digits[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : path) {
    if (unreserved(c) || c == '/') {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(digits[c >> 4]);
      out.push_back(digits[c & 0xf]);
    }
  }
  return out.empty() ? "/" : out;
}

// name=value pairs sorted by name then value; each as sent (the client encoded them).
std::string canonical_query(std::string_view query) {
  std::vector<std::pair<std::string_view, std::string_view>> pairs;
  while (!query.empty()) {
    const auto amp = query.find('&');
    std::string_view item = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
    if (item.empty()) continue;
    const auto eq = item.find('=');
    pairs.emplace_back(item.substr(0, eq), eq == std::string_view::npos ? std::string_view{} : item.substr(eq + 1));
  }
  std::sort(pairs.begin(), pairs.end());
  std::string out;
  for (const auto& [k, v] : pairs) {
    if (!out.empty()) out.push_back('&');
    out.append(k).append("=").append(v);
  }
  return out;
}

const transport::HttpField* find_field(const std::vector<transport::HttpField>& fields, std::string_view name) {
  for (const auto& f : fields)
    if (f.name == name) return &f;
  return nullptr;
}

// "20260101T120000Z" → seconds since the epoch.
Expected<std::time_t, std::string> parse_amz_date(std::string_view s) {
  if (s.size() != 16 || s[8] != 'T' || s[15] != 'Z') return unexpected(std::string("X-Amz-Date is not YYYYMMDD'T'HHMMSS'Z'"));
  for (std::size_t i : {0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14})
    if (!std::isdigit(static_cast<unsigned char>(s[i]))) return unexpected(std::string("X-Amz-Date is not YYYYMMDD'T'HHMMSS'Z'"));
  auto num = [&](std::size_t at, std::size_t n) {
    int v = 0;
    for (std::size_t i = at; i < at + n; ++i) v = v * 10 + (s[i] - '0');
    return v;
  };
  std::tm tm{};
  tm.tm_year = num(0, 4) - 1900;
  tm.tm_mon = num(4, 2) - 1;
  tm.tm_mday = num(6, 2);
  tm.tm_hour = num(9, 2);
  tm.tm_min = num(11, 2);
  tm.tm_sec = num(13, 2);
  if (tm.tm_mon > 11 || tm.tm_mday < 1 || tm.tm_mday > 31 || tm.tm_hour > 23 || tm.tm_min > 59 || tm.tm_sec > 60)
    return unexpected(std::string("X-Amz-Date is not a valid time"));
  return ::timegm(&tm);
}

}  // namespace

Expected<SigV4Authorization, std::string> parse_authorization(std::string_view header) {
  header = trim(header);
  if (header.substr(0, kAlgorithm.size()) != kAlgorithm || header.size() == kAlgorithm.size() ||
      header[kAlgorithm.size()] != ' ')
    return unexpected(std::string("Authorization is not AWS4-HMAC-SHA256"));
  std::string_view rest = header.substr(kAlgorithm.size() + 1);
  SigV4Authorization out;
  bool have_credential = false, have_headers = false, have_signature = false;
  while (!rest.empty()) {
    const auto comma = rest.find(',');
    std::string_view part = trim(rest.substr(0, comma));
    rest = comma == std::string_view::npos ? std::string_view{} : rest.substr(comma + 1);
    const auto eq = part.find('=');
    if (eq == std::string_view::npos) return unexpected(std::string("Authorization has a part without '='"));
    const std::string_view key = part.substr(0, eq), value = part.substr(eq + 1);
    if (key == "Credential" && !have_credential) {
      have_credential = true;
      std::vector<std::string_view> scope;
      std::string_view v = value;
      while (true) {
        const auto slash = v.find('/');
        scope.push_back(v.substr(0, slash));
        if (slash == std::string_view::npos || scope.size() > 5) break;
        v = v.substr(slash + 1);
      }
      if (scope.size() != 5 || scope[4] != "aws4_request")
        return unexpected(std::string("Credential is not <id>/<date>/<region>/<service>/aws4_request"));
      if (scope[0].empty() || scope[0].size() > 128) return unexpected(std::string("Credential has no access key id"));
      if (scope[1].size() != 8 || !std::all_of(scope[1].begin(), scope[1].end(), [](unsigned char c) { return std::isdigit(c); }))
        return unexpected(std::string("Credential date is not YYYYMMDD"));
      out.access_key_id = scope[0];
      out.date = scope[1];
      out.region = scope[2];
      out.service = scope[3];
    } else if (key == "SignedHeaders" && !have_headers) {
      have_headers = true;
      std::string_view v = value;
      while (!v.empty() || out.signed_headers.empty()) {
        const auto semi = v.find(';');
        std::string_view name = v.substr(0, semi);
        if (name.empty()) return unexpected(std::string("SignedHeaders has an empty name"));
        if (!std::all_of(name.begin(), name.end(), [](unsigned char c) { return std::islower(c) || std::isdigit(c) || c == '-' || c == '_'; }))
          return unexpected(std::string("SignedHeaders names must be lowercase header names"));
        if (!out.signed_headers.empty() && out.signed_headers.back() >= name)
          return unexpected(std::string("SignedHeaders must be sorted and without repeats"));
        out.signed_headers.emplace_back(name);
        if (out.signed_headers.size() > kMaxSignedHeaders) return unexpected(std::string("too many SignedHeaders"));
        if (semi == std::string_view::npos) break;
        v = v.substr(semi + 1);
        if (v.empty()) return unexpected(std::string("SignedHeaders has an empty name"));
      }
    } else if (key == "Signature" && !have_signature) {
      have_signature = true;
      if (value.size() != 64 || !std::all_of(value.begin(), value.end(), [](unsigned char c) { return std::isdigit(c) || (c >= 'a' && c <= 'f'); }))
        return unexpected(std::string("Signature is not 64 lowercase hex digits"));
      out.signature = value;
    } else {
      return unexpected("Authorization has an unexpected or repeated part '" + std::string(key.substr(0, 32)) + "'");
    }
  }
  if (!have_credential || !have_headers || !have_signature)
    return unexpected(std::string("Authorization needs Credential, SignedHeaders and Signature"));
  return out;
}

Expected<std::string, std::string> canonical_request(const SignedRequest& request,
                                                     const std::vector<std::string>& signed_headers) {
  const auto q = request.target.find('?');
  std::string out;
  out.append(request.method).push_back('\n');
  out.append(canonical_uri(request.target.substr(0, q))).push_back('\n');
  out.append(q == std::string_view::npos ? std::string() : canonical_query(request.target.substr(q + 1))).push_back('\n');
  for (const auto& name : signed_headers) {
    std::string joined;
    bool found = false;
    for (const auto& f : request.fields) {
      if (f.name != name) continue;
      if (found) joined.push_back(',');
      joined += collapse_spaces(f.value);
      found = true;
    }
    if (!found) return unexpected("the signed header '" + name + "' is missing");
    out.append(name).append(":").append(joined).push_back('\n');
  }
  out.push_back('\n');
  for (std::size_t i = 0; i < signed_headers.size(); ++i) {
    if (i) out.push_back(';');
    out.append(signed_headers[i]);
  }
  out.push_back('\n');
  out.append(sha256_hex(request.body));
  return out;
}

std::string sigv4_signature(std::string_view secret, std::string_view date, std::string_view region,
                            std::string_view service, std::string_view string_to_sign) {
  std::string key = "AWS4";
  key.append(secret);
  const Mac k_date = hmac(key, date);
  OPENSSL_cleanse(key.data(), key.size());
  const Mac k_region = hmac(as_view(k_date), region);
  const Mac k_service = hmac(as_view(k_region), service);
  Mac k_signing = hmac(as_view(k_service), "aws4_request");
  const Mac signature = hmac(as_view(k_signing), string_to_sign);
  OPENSSL_cleanse(k_signing.data(), k_signing.size());
  return hex(signature.data(), signature.size());
}

Expected<std::string, std::string> verify_sigv4(const SignedRequest& request, const std::vector<SigV4Credential>& credentials,
                                                const SigV4Settings& settings, std::time_t now) {
  std::size_t authorizations = 0;
  const transport::HttpField* authorization = nullptr;
  for (const auto& f : request.fields)
    if (f.name == "authorization") {
      ++authorizations;
      authorization = &f;
    }
  if (authorizations != 1) return unexpected(std::string(authorizations ? "more than one Authorization header" : "no Authorization header"));
  auto auth = parse_authorization(authorization->value);
  if (!auth) return unexpected(auth.error());
  if (auth->service != settings.service) return unexpected("the credential scope names service '" + auth->service.substr(0, 64) + "', not " + settings.service);
  if (auth->region != settings.region) return unexpected("the credential scope names region '" + auth->region.substr(0, 64) + "', not " + settings.region);
  const auto& names = auth->signed_headers;
  for (std::string_view required : {"host", "x-amz-date"})
    if (std::find(names.begin(), names.end(), required) == names.end())
      return unexpected("the signature must cover the '" + std::string(required) + "' header");
  const auto* date_field = find_field(request.fields, "x-amz-date");
  if (!date_field) return unexpected(std::string("no X-Amz-Date header"));
  auto when = parse_amz_date(date_field->value);
  if (!when) return unexpected(when.error());
  if (date_field->value.substr(0, 8) != auth->date) return unexpected(std::string("the credential scope date is not the X-Amz-Date day"));
  const auto skew = std::chrono::seconds(*when > now ? *when - now : now - *when);
  if (skew > settings.max_skew)
    return unexpected("the request time is " + std::to_string(skew.count()) + " s away from ours (at most " +
                      std::to_string(settings.max_skew.count()) + " s)");
  // A payload hash the client sent must be the body's: no UNSIGNED-PAYLOAD, no streaming forms.
  if (const auto* declared = find_field(request.fields, "x-amz-content-sha256"); declared && declared->value != sha256_hex(request.body))
    return unexpected(std::string("X-Amz-Content-SHA256 is not the SHA-256 of the body"));
  const SigV4Credential* credential = nullptr;
  for (const auto& c : credentials)
    if (c.access_key_id == auth->access_key_id) credential = &c;
  if (!credential) return unexpected(std::string("unknown access key id"));
  auto canonical = canonical_request(request, names);
  if (!canonical) return unexpected(canonical.error());
  const std::string scope = auth->date + "/" + auth->region + "/" + auth->service + "/aws4_request";
  const std::string to_sign = std::string(kAlgorithm) + "\n" + date_field->value + "\n" + scope + "\n" + sha256_hex(*canonical);
  const std::string expected = sigv4_signature(
      std::string_view(reinterpret_cast<const char*>(credential->secret.data()), credential->secret.size()), auth->date,
      auth->region, auth->service, to_sign);
  if (CRYPTO_memcmp(expected.data(), auth->signature.data(), expected.size()) != 0)
    return unexpected(std::string("the signature does not match"));
  return auth->access_key_id;
}

}  // namespace custody::xks
