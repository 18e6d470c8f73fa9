#!/usr/bin/env python3
"""The BYOK import payloads and key check values of docs/formats.md, from fixed inputs: the
AES-KWP (RFC 5649) part and the KCVs are deterministic and checked byte for byte; the RSA-OAEP
part is randomized, so it is made with a throw-away RSA-3072 key and opened again. Needs
python3-cryptography.

    python3 docs/examples/byok_payload.py
"""
import os
import sys

sys.dont_write_bytecode = True  # leave no __pycache__ in docs/examples
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from custody_http import kcv  # noqa: E402

E = bytes(range(0x20, 0x40))  # the ephemeral AES-256 key (example value; use 32 random bytes)
K = bytes(range(32))          # the key material being imported (example value)
EXPECTED_KWP = "086e3aeda49a83d0a40b27c21b4263a8a19aecb44f9877bd9d7e67622ff218c6f73a156c8aa302a9"


def main():
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding, rsa
    from cryptography.hazmat.primitives.keywrap import aes_key_unwrap_with_padding, aes_key_wrap_with_padding

    kwp = aes_key_wrap_with_padding(E, K)
    print("AES-KWP(E, K)", kwp.hex(), f"({len(kwp)} bytes)")
    assert kwp.hex() == EXPECTED_KWP and len(kwp) == 40
    assert aes_key_unwrap_with_padding(E, kwp) == K
    print("KCV aes-256-gcm", kcv("aes-256-gcm", K), " KCV hmac-sha256", kcv("hmac-sha256", K))
    assert kcv("aes-256-gcm", K) == "F29000" and kcv("hmac-sha256", K) == "FF9212"

    # rsa-oaep-3072-sha256-aes-256: RSA-OAEP(SHA-256, MGF1-SHA-256, no label)(E) || AES-KWP(E, K)
    job = rsa.generate_private_key(public_exponent=65537, key_size=3072)
    oaep = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
    payload = job.public_key().encrypt(E, oaep) + kwp
    print("payload", len(payload), "bytes = 384 (RSA-OAEP block) + 40 (AES-KWP)")
    assert len(payload) == 384 + 40
    assert job.decrypt(payload[:384], oaep) == E
    assert aes_key_unwrap_with_padding(job.decrypt(payload[:384], oaep), payload[384:]) == K
    print("ok")


if __name__ == "__main__":
    sys.exit(main())
