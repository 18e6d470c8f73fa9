#include "bench/direct.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "bench/token_timing.h"

namespace custody::bench {

namespace {

// A 32-byte DEK under AES-GCM with a 12-byte IV and an AAD the size of a blob header with an
// empty context (CONTRACT §4), as an unwrap decrypts it.
struct GcmBlob {
  CK_BYTE iv[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
  CK_BYTE aad[32] = {'C', 'S', 'T', 1};
  CK_BYTE dek[32] = {};
  CK_BYTE ciphertext[48] = {};  // ciphertext || tag
  CK_GCM_PARAMS params() { return CK_GCM_PARAMS{iv, sizeof iv, sizeof iv * 8, aad, sizeof aad, 128}; }
};

}  // namespace

void run_direct(const test::TokenFiles& token, double seconds, Report& report) {
  ::setenv("SOFTHSM2_CONF", token.conf.c_str(), 1);
  auto opened = open_token(CUSTODY_SOFTHSM_MODULE, token.label, token.pin);
  if (!opened) return report.add_missing("direct", "cannot open the token: " + opened.error());
  CK_FUNCTION_LIST* api = opened->module->api();
  auto aes = make_token_key(*opened->session, BenchKeyKind::aes_256_gcm, "custody-bench-direct-aes");
  auto hmac = make_token_key(*opened->session, BenchKeyKind::hmac_sha256, "custody-bench-direct-hmac");
  if (!aes || !hmac) return report.add_missing("direct", "cannot make the run's keys: " + (aes ? hmac.error() : aes.error()));

  GcmBlob blob;
  std::memcpy(blob.dek, "0123456789abcdef0123456789abcdef", 32);
  CK_GCM_PARAMS params = blob.params();
  CK_MECHANISM gcm{CKM_AES_GCM, &params, sizeof params};
  CK_ULONG ciphertext_len = sizeof blob.ciphertext;
  const CK_SESSION_HANDLE main_session = opened->session->handle();
  if (CK_RV rv = api->C_EncryptInit(main_session, &gcm, *aes);
      rv != CKR_OK || (rv = api->C_Encrypt(main_session, blob.dek, sizeof blob.dek, blob.ciphertext, &ciphertext_len)) != CKR_OK ||
      ciphertext_len != sizeof blob.ciphertext) {
    report.add_missing("direct", std::string("C_Encrypt of the DEK failed: ") + p11::rv_name(rv));
  } else {
    // The output buffer is the ciphertext's size, as custody's unwrap passes it.
    Row row = time_token_calls(*opened, 1, seconds, "direct", kDirectDecryptRow, [&](CK_SESSION_HANDLE s) {
      CK_GCM_PARAMS p = blob.params();
      CK_MECHANISM m{CKM_AES_GCM, &p, sizeof p};
      if (CK_RV rv = api->C_DecryptInit(s, &m, *aes); rv != CKR_OK) return rv;
      CK_BYTE out[sizeof blob.ciphertext];
      CK_ULONG out_len = sizeof out;
      const CK_RV rv = api->C_Decrypt(s, blob.ciphertext, sizeof blob.ciphertext, out, &out_len);
      if (rv == CKR_OK && (out_len != sizeof blob.dek || std::memcmp(out, blob.dek, out_len) != 0)) return CKR_GENERAL_ERROR;
      return rv;
    });
    print_progress(row);
    report.add(std::move(row));
  }

  Row row = time_token_calls(*opened, 1, seconds, "direct", kDirectHmacRow, hmac_call(api, *hmac));
  print_progress(row);
  report.add(std::move(row));

  for (const auto& [key, name] : {std::pair{*aes, "aes"}, std::pair{*hmac, "hmac"}})
    if (auto ok = opened->session->destroy_object(key); !ok)
      std::fprintf(stderr, "direct: cannot destroy the run's %s key: %s\n", name, ok.error().describe().c_str());
}

}  // namespace custody::bench
