#pragma once
// The one place the PKCS#11 header is included. p11-kit's header follows PKCS#11 2.40 with
// lower-case struct members; the few 3.0 constants custody probes for are added here.
#include <p11-kit/pkcs11.h>

#ifndef CKM_HKDF_DERIVE
#define CKM_HKDF_DERIVE 0x402aUL
#endif
