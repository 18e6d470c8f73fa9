#pragma once
// The one place the PKCS#11 header is included (p11-kit's, PKCS#11 2.40, in its compatibility
// mode with the standard CK_ names).
#include <p11-kit/pkcs11.h>
