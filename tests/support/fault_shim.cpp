// A PKCS#11 module for fault-injection tests: it forwards every call to a real module (SoftHSMv2
// by default, CUSTODY_SHIM_TARGET to choose) and, while the file named by CUSTODY_SHIM_FAULT_FILE
// exists, answers the calls below with CKR_DEVICE_REMOVED, as a token that was unplugged would.
// Calls the shim does not wrap go to the real module, which is finalized during the fault.
// With CUSTODY_SHIM_LATENCY_US set, C_Encrypt, C_Decrypt, C_Sign and C_GenerateRandom first sleep
// that many microseconds: the round trip of a network HSM, for the benchmark's simulated one.
// While the file named by CUSTODY_SHIM_DECRYPT_RV_FILE exists, C_Decrypt answers the CK_RV written
// in it (e.g. "0x5") after the real call ended the operation. CUSTODY_SHIM_MANUFACTURER replaces the
// token's manufacturerID in C_GetTokenInfo: a token of another make, for the quirks table.
// With CUSTODY_SHIM_FAIL_CALL=N, the Nth call through the shim (every entry point it wraps,
// counted from the first) answers CKR_DEVICE_ERROR once, and the shim writes that call's name to
// CUSTODY_SHIM_FAIL_HIT_FILE: a transient token error at one chosen point, so a test can walk
// every token call of a code path (start-up) one failure at a time and know when it has passed
// the last one (no hit file).
// With CUSTODY_SHIM_GCM_IV_FROM_TOKEN set, the shim is an HSM that makes its AES-GCM IVs itself:
// C_EncryptInit with CKM_AES_GCM refuses a caller's IV (any non-zero byte) with
// CKR_MECHANISM_PARAM_INVALID, and fills a zeroed one with random bytes before forwarding; set to
// "overwrite", it refuses nothing and replaces any caller IV with its own, as AWS CloudHSM does. The
// last IV it made is written, in hex, to the file CUSTODY_SHIM_GCM_IV_FILE names (when set).
// With CUSTODY_SHIM_RACES=C_Name:N (C_GetTokenInfo, C_Login or C_GenerateKeyPair), that function
// fails and does nothing during the module's first N initialisations: SoftHSMv2 once it met another
// process's write to its store (see p11::quirks::may_be_a_shared_store_race) keeps its view of the
// token invalid until C_Finalize and C_Initialize. CKR_FUNCTION_FAILED from C_GenerateKeyPair,
// CKR_GENERAL_ERROR from the others.
// With CUSTODY_SHIM_BLIND_INITIALISATION=N, C_FindObjects finds nothing during the module's Nth
// initialisation (1 is the first): SoftHSMv2's view of its store after a listing raced another
// process's write, which loses objects until the module is initialised again.
#include <dlfcn.h>
#include <sys/random.h>
#include <sys/prctl.h>
#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <span>
#include <string>
#include <thread>

#include "pkcs11/pkcs11.h"

namespace {

CK_FUNCTION_LIST* real = nullptr;
CK_FUNCTION_LIST shim;

std::atomic<bool> unplugged{false};

std::atomic<unsigned long> calls_counted{0};

// True for the one call CUSTODY_SHIM_FAIL_CALL names; records its name in the hit file.
bool counted_fault(const char* call) {
  static const unsigned long target = [] {
    const char* text = std::getenv("CUSTODY_SHIM_FAIL_CALL");
    return text ? std::strtoul(text, nullptr, 10) : 0UL;
  }();
  if (target == 0 || calls_counted.fetch_add(1) + 1 != target) return false;
  if (const char* path = std::getenv("CUSTODY_SHIM_FAIL_HIT_FILE")) {
    if (FILE* f = std::fopen(path, "w")) {
      std::fputs(call, f);
      std::fclose(f);
    }
  }
  return true;
}

// Initialisations of the module still to be spoilt by a race (CUSTODY_SHIM_RACES "C_Name:N").
std::atomic<long> racing_initialisations = [] {
  const char* text = std::getenv("CUSTODY_SHIM_RACES");
  const char* colon = text ? std::strchr(text, ':') : nullptr;
  return colon ? std::strtol(colon + 1, nullptr, 10) : 0L;
}();

// True when CUSTODY_SHIM_RACES names call and this initialisation of the module is spoilt.
bool raced(const char* call) {
  static const std::string name = [] {
    const char* text = std::getenv("CUSTODY_SHIM_RACES");
    const char* colon = text ? std::strchr(text, ':') : nullptr;
    return colon ? std::string(text, colon) : std::string();
  }();
  return name == call && racing_initialisations.load() > 0;
}

// How many times the module was initialised (C_Initialize), and the one CUSTODY_SHIM_BLIND_INITIALISATION names.
std::atomic<long> initialisations{0};
const long blind_initialisation = [] {
  const char* text = std::getenv("CUSTODY_SHIM_BLIND_INITIALISATION");
  return text ? std::strtol(text, nullptr, 10) : 0L;
}();

// When the fault starts, the real module is finalized: like a token that was pulled out, every
// session, login and object handle is gone, and only C_Finalize + C_Initialize (a module reset
// by the caller) brings it back once the fault ends.
bool faulty() {
  const char* path = std::getenv("CUSTODY_SHIM_FAULT_FILE");
  struct stat st {};
  const bool now = path && ::stat(path, &st) == 0;
  if (now && !unplugged.exchange(true)) real->C_Finalize(nullptr);
  if (!now) unplugged = false;
  return now;
}

// With CUSTODY_SHIM_REQUIRE_INIT_ARGS set, C_Initialize demands exactly that string in
// pReserved, as NSS softokn demands its configuration there.
// The shim consumes the string, as NSS would: SoftHSMv2 itself insists on a null pReserved.
CK_RV Initialize(CK_VOID_PTR args) {
  // Every initialisation after the first starts from a fresh view of the store.
  if (++initialisations > 1 && racing_initialisations.load() > 0) --racing_initialisations;
  if (const char* want = std::getenv("CUSTODY_SHIM_REQUIRE_INIT_ARGS")) {
    auto* a = static_cast<CK_C_INITIALIZE_ARGS*>(args);
    if (!a || !a->pReserved || std::strcmp(static_cast<const char*>(a->pReserved), want) != 0) return CKR_ARGUMENTS_BAD;
  }
  if (!args) return real->C_Initialize(nullptr);
  CK_C_INITIALIZE_ARGS forwarded = *static_cast<CK_C_INITIALIZE_ARGS*>(args);
  forwarded.pReserved = nullptr;
  return real->C_Initialize(&forwarded);
}

CK_RV GetSlotList(CK_BBOOL present, CK_SLOT_ID_PTR list, CK_ULONG_PTR count) {
  if (counted_fault("C_GetSlotList")) return CKR_DEVICE_ERROR;
  return faulty() ? CKR_DEVICE_REMOVED : real->C_GetSlotList(present, list, count);
}
CK_RV OpenSession(CK_SLOT_ID slot, CK_FLAGS flags, CK_VOID_PTR app, CK_NOTIFY notify, CK_SESSION_HANDLE_PTR session) {
  if (counted_fault("C_OpenSession")) return CKR_DEVICE_ERROR;
  return faulty() ? CKR_DEVICE_REMOVED : real->C_OpenSession(slot, flags, app, notify, session);
}
// CUSTODY_SHIM_GCM_IV_FROM_TOKEN: refuse a caller's GCM IV, make one in a zeroed buffer.
CK_RV token_made_gcm_iv(CK_MECHANISM_PTR m) {
  if (!std::getenv("CUSTODY_SHIM_GCM_IV_FROM_TOKEN") || !m || m->mechanism != CKM_AES_GCM || !m->pParameter ||
      m->ulParameterLen != sizeof(CK_GCM_PARAMS))
    return CKR_OK;
  auto* params = static_cast<CK_GCM_PARAMS*>(m->pParameter);
  if (!params->pIv || params->ulIvLen == 0) return CKR_MECHANISM_PARAM_INVALID;
  const auto iv = std::span<CK_BYTE>(params->pIv, params->ulIvLen);
  const bool overwrite = std::strcmp(std::getenv("CUSTODY_SHIM_GCM_IV_FROM_TOKEN"), "overwrite") == 0;
  if (!overwrite && std::any_of(iv.begin(), iv.end(), [](CK_BYTE b) { return b != 0; })) return CKR_MECHANISM_PARAM_INVALID;
  if (::getrandom(iv.data(), iv.size(), 0) != static_cast<ssize_t>(iv.size())) return CKR_DEVICE_ERROR;
  if (const char* path = std::getenv("CUSTODY_SHIM_GCM_IV_FILE")) {
    if (FILE* f = std::fopen(path, "w")) {
      for (CK_BYTE b : iv) std::fprintf(f, "%02x", b);
      std::fclose(f);
    }
  }
  return CKR_OK;
}
CK_RV EncryptInit(CK_SESSION_HANDLE s, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE k) {
  if (counted_fault("C_EncryptInit")) return CKR_DEVICE_ERROR;
  if (faulty()) return CKR_DEVICE_REMOVED;
  if (const CK_RV rv = token_made_gcm_iv(m); rv != CKR_OK) return rv;
  return real->C_EncryptInit(s, m, k);
}
CK_RV DecryptInit(CK_SESSION_HANDLE s, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE k) {
  if (counted_fault("C_DecryptInit")) return CKR_DEVICE_ERROR;
  return faulty() ? CKR_DEVICE_REMOVED : real->C_DecryptInit(s, m, k);
}
CK_RV SignInit(CK_SESSION_HANDLE s, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE k) {
  if (counted_fault("C_SignInit")) return CKR_DEVICE_ERROR;
  return faulty() ? CKR_DEVICE_REMOVED : real->C_SignInit(s, m, k);
}
// Read once: the latency is fixed for the life of the process.
std::chrono::microseconds network_latency() {
  static const std::chrono::microseconds latency = [] {
    const char* text = std::getenv("CUSTODY_SHIM_LATENCY_US");
    return std::chrono::microseconds(text ? std::strtoll(text, nullptr, 10) : 0);
  }();
  return latency;
}
void network_round_trip() {
  const auto latency = network_latency();
  if (latency.count() <= 0) return;
  // The kernel may oversleep by the thread's timer slack (50 µs by default): keep the simulated
  // round trip at the latency asked for.
  static thread_local const bool precise = ::prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL) == 0;
  (void)precise;
  std::this_thread::sleep_for(latency);
}
CK_RV Encrypt(CK_SESSION_HANDLE s, CK_BYTE_PTR in, CK_ULONG in_len, CK_BYTE_PTR out, CK_ULONG_PTR out_len) {
  if (counted_fault("C_Encrypt")) return CKR_DEVICE_ERROR;
  network_round_trip();
  return real->C_Encrypt(s, in, in_len, out, out_len);
}
// The CK_RV in CUSTODY_SHIM_DECRYPT_RV_FILE, when that file exists.
std::optional<CK_RV> forced_decrypt_rv() {
  const char* path = std::getenv("CUSTODY_SHIM_DECRYPT_RV_FILE");
  if (!path) return std::nullopt;
  FILE* f = std::fopen(path, "r");
  if (!f) return std::nullopt;
  char text[32] = {};
  const bool read = std::fgets(text, sizeof text, f) != nullptr;
  std::fclose(f);
  if (!read) return std::nullopt;
  return static_cast<CK_RV>(std::strtoul(text, nullptr, 0));
}
CK_RV Decrypt(CK_SESSION_HANDLE s, CK_BYTE_PTR in, CK_ULONG in_len, CK_BYTE_PTR out, CK_ULONG_PTR out_len) {
  if (counted_fault("C_Decrypt")) return CKR_DEVICE_ERROR;
  network_round_trip();
  const CK_RV rv = real->C_Decrypt(s, in, in_len, out, out_len);
  // A size query (no output buffer) leaves the operation open: only its real end is replaced.
  if (out == nullptr && rv == CKR_OK) return rv;
  return forced_decrypt_rv().value_or(rv);
}
CK_RV GetTokenInfo(CK_SLOT_ID slot, CK_TOKEN_INFO_PTR info) {
  if (counted_fault("C_GetTokenInfo")) return CKR_DEVICE_ERROR;
  if (raced("C_GetTokenInfo")) return CKR_GENERAL_ERROR;
  const CK_RV rv = real->C_GetTokenInfo(slot, info);
  const char* manufacturer = std::getenv("CUSTODY_SHIM_MANUFACTURER");
  if (rv != CKR_OK || !manufacturer) return rv;
  std::memset(info->manufacturerID, ' ', sizeof info->manufacturerID);
  std::memcpy(info->manufacturerID, manufacturer, std::min(std::strlen(manufacturer), sizeof info->manufacturerID));
  return rv;
}
CK_RV Sign(CK_SESSION_HANDLE s, CK_BYTE_PTR in, CK_ULONG in_len, CK_BYTE_PTR out, CK_ULONG_PTR out_len) {
  if (counted_fault("C_Sign")) return CKR_DEVICE_ERROR;
  network_round_trip();
  return real->C_Sign(s, in, in_len, out, out_len);
}
CK_RV FindObjectsInit(CK_SESSION_HANDLE s, CK_ATTRIBUTE_PTR t, CK_ULONG n) {
  if (counted_fault("C_FindObjectsInit")) return CKR_DEVICE_ERROR;
  return faulty() ? CKR_DEVICE_REMOVED : real->C_FindObjectsInit(s, t, n);
}
CK_RV GenerateRandom(CK_SESSION_HANDLE s, CK_BYTE_PTR out, CK_ULONG n) {
  if (counted_fault("C_GenerateRandom")) return CKR_DEVICE_ERROR;
  if (faulty()) return CKR_DEVICE_REMOVED;
  network_round_trip();  // a network HSM's generator is across the network too
  return real->C_GenerateRandom(s, out, n);
}

// Counted only (CUSTODY_SHIM_FAIL_CALL): the rest of what start-up and admin changes call.
CK_RV Login(CK_SESSION_HANDLE s, CK_USER_TYPE user, CK_UTF8CHAR_PTR pin, CK_ULONG pin_len) {
  if (raced("C_Login")) return CKR_GENERAL_ERROR;
  return counted_fault("C_Login") ? CKR_DEVICE_ERROR : real->C_Login(s, user, pin, pin_len);
}
CK_RV GetAttributeValue(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_PTR t, CK_ULONG n) {
  return counted_fault("C_GetAttributeValue") ? CKR_DEVICE_ERROR : real->C_GetAttributeValue(s, o, t, n);
}
CK_RV FindObjects(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE_PTR found, CK_ULONG max, CK_ULONG_PTR count) {
  if (blind_initialisation != 0 && initialisations.load() == blind_initialisation && count) {
    *count = 0;
    return CKR_OK;
  }
  return counted_fault("C_FindObjects") ? CKR_DEVICE_ERROR : real->C_FindObjects(s, found, max, count);
}
CK_RV GetMechanismList(CK_SLOT_ID slot, CK_MECHANISM_TYPE_PTR list, CK_ULONG_PTR count) {
  return counted_fault("C_GetMechanismList") ? CKR_DEVICE_ERROR : real->C_GetMechanismList(slot, list, count);
}
CK_RV GetMechanismInfo(CK_SLOT_ID slot, CK_MECHANISM_TYPE type, CK_MECHANISM_INFO_PTR info) {
  return counted_fault("C_GetMechanismInfo") ? CKR_DEVICE_ERROR : real->C_GetMechanismInfo(slot, type, info);
}
CK_RV GenerateKey(CK_SESSION_HANDLE s, CK_MECHANISM_PTR m, CK_ATTRIBUTE_PTR t, CK_ULONG n, CK_OBJECT_HANDLE_PTR key) {
  return counted_fault("C_GenerateKey") ? CKR_DEVICE_ERROR : real->C_GenerateKey(s, m, t, n, key);
}
CK_RV GenerateKeyPair(CK_SESSION_HANDLE s, CK_MECHANISM_PTR m, CK_ATTRIBUTE_PTR pub, CK_ULONG pub_n,
                      CK_ATTRIBUTE_PTR priv, CK_ULONG priv_n, CK_OBJECT_HANDLE_PTR pub_key,
                      CK_OBJECT_HANDLE_PTR priv_key) {
  if (raced("C_GenerateKeyPair")) return CKR_FUNCTION_FAILED;
  return counted_fault("C_GenerateKeyPair") ? CKR_DEVICE_ERROR
                                            : real->C_GenerateKeyPair(s, m, pub, pub_n, priv, priv_n, pub_key, priv_key);
}
CK_RV DestroyObject(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o) {
  return counted_fault("C_DestroyObject") ? CKR_DEVICE_ERROR : real->C_DestroyObject(s, o);
}

}  // namespace

extern "C" __attribute__((visibility("default"))) CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR list) {
  if (!real) {
    const char* target = std::getenv("CUSTODY_SHIM_TARGET");
    void* handle = ::dlopen(target ? target : "/usr/lib/softhsm/libsofthsm2.so", RTLD_NOW | RTLD_LOCAL);
    if (!handle) return CKR_GENERAL_ERROR;
    auto get = reinterpret_cast<CK_C_GetFunctionList>(::dlsym(handle, "C_GetFunctionList"));
    if (!get || get(&real) != CKR_OK) return CKR_GENERAL_ERROR;
    shim = *real;
    shim.C_Initialize = Initialize;
    shim.C_GetSlotList = GetSlotList;
    shim.C_OpenSession = OpenSession;
    shim.C_EncryptInit = EncryptInit;
    shim.C_DecryptInit = DecryptInit;
    shim.C_SignInit = SignInit;
    shim.C_Encrypt = Encrypt;
    shim.C_Decrypt = Decrypt;
    shim.C_Sign = Sign;
    shim.C_FindObjectsInit = FindObjectsInit;
    shim.C_GenerateRandom = GenerateRandom;
    shim.C_GetTokenInfo = GetTokenInfo;
    shim.C_Login = Login;
    shim.C_GetAttributeValue = GetAttributeValue;
    shim.C_FindObjects = FindObjects;
    shim.C_GetMechanismList = GetMechanismList;
    shim.C_GetMechanismInfo = GetMechanismInfo;
    shim.C_GenerateKey = GenerateKey;
    shim.C_GenerateKeyPair = GenerateKeyPair;
    shim.C_DestroyObject = DestroyObject;
  }
  *list = &shim;
  return CKR_OK;
}
