#!/usr/bin/env python3
"""HKDF-Expand (RFC 5869 section 2.3) with HMAC-SHA256, Python's standard library only: what
POST /v1/keys/{name}/derive computes in the token with the key version as PRK. Run on its own, it
checks the expand step of RFC 5869 test case 1 and the worked example of docs/formats.md.

    python3 docs/examples/hkdf_expand.py
"""
import hashlib
import hmac
import sys


def hkdf_expand(prk, info, length):
    """T(0) = b""; T(i) = HMAC(PRK, T(i-1) || info || i); OKM = first `length` bytes of T(1) || T(2) || ..."""
    if not 1 <= length <= 255 * 32:
        raise ValueError("length must be 1..8160")
    okm, t = b"", b""
    for i in range(1, -(-length // 32) + 1):
        t = hmac.new(prk, t + info + bytes([i]), hashlib.sha256).digest()
        okm += t
    return okm[:length]


def main():
    # RFC 5869, A.1 (test case 1): PRK and info as given there, L = 42.
    prk = bytes.fromhex("077709362c2e32df0ddc3f0dc47bba6390b6c73bb50f9c3122ec844ad7c2b3e5")
    info = bytes.fromhex("f0f1f2f3f4f5f6f7f8f9")
    okm = hkdf_expand(prk, info, 42)
    assert okm.hex() == ("3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf"
                         "34007208d5b887185865"), okm.hex()
    # docs/formats.md: K = 00 01 .. 1f, info "tenant-42", 40 bytes (two HMAC blocks).
    example = hkdf_expand(bytes(range(32)), b"tenant-42", 40)
    print("T(1)", hmac.new(bytes(range(32)), b"tenant-42\x01", hashlib.sha256).hexdigest())
    print("OKM ", example.hex())
    assert example.hex() == "4a72bc49f72b043effb4010cdfa63ca203f7dc26b27c72ca7b0582304b931932f4efc186c1ec4d85"
    print("ok: RFC 5869 test case 1 and the documented example")


if __name__ == "__main__":
    sys.exit(main())
