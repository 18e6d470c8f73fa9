#!/usr/bin/env python3
"""The ciphertext blob (aes-256-gcm, version 1) and the encryption context encoding, as
docs/formats.md describes them; run on its own, it rebuilds the worked example of that section
from fixed inputs and checks every byte. Needs python3-cryptography (AES-GCM) only.

    python3 docs/examples/blob_format.py
"""
import struct
import sys

MAGIC = b"CST\x01"


def encode_context(context):
    """u16be n || per pair, sorted by the key's UTF-8 bytes: u16be len(key) || key || u16be len(value) || value."""
    pairs = sorted((k.encode(), v.encode()) for k, v in context.items())
    out = struct.pack(">H", len(pairs))
    for k, v in pairs:
        out += struct.pack(">H", len(k)) + k + struct.pack(">H", len(v)) + v
    return out


def blob_header(key_name, version, iv):
    name = key_name.encode("ascii")
    assert len(iv) == 12 and 1 <= len(name) <= 63
    return MAGIC + bytes([len(name)]) + name + struct.pack(">I", version) + iv


def parse_blob(blob):
    """Returns (key_name, version, header, iv, ciphertext, tag)."""
    if blob[:3] != b"CST" or blob[3] != 1:
        raise ValueError("not a version-1 custody blob")
    n = blob[4]
    header_len = 5 + n + 4 + 12
    if len(blob) < header_len + 16:
        raise ValueError("truncated blob")
    name = blob[5:5 + n].decode("ascii")
    (version,) = struct.unpack(">I", blob[5 + n:9 + n])
    header = blob[:header_len]
    return name, version, header, blob[header_len - 12:header_len], blob[header_len:-16], blob[-16:]


def seal(key, key_name, version, iv, plaintext, context):
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    header = blob_header(key_name, version, iv)
    return header + AESGCM(key).encrypt(iv, plaintext, header + encode_context(context))


def open_blob(key, blob, context):
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    _, _, header, iv, ciphertext, tag = parse_blob(blob)
    return AESGCM(key).decrypt(iv, ciphertext + tag, header + encode_context(context))


# The worked example of docs/formats.md.
KEY = bytes(range(32))                       # 000102…1f: an example key, never a real one
IV = bytes.fromhex("a0a1a2a3a4a5a6a7a8a9aaab")
CONTEXT = {"tenant": "acme", "app": "billing"}
EXPECTED_CTX = "0002" "0003" "617070" "0007" "62696c6c696e67" "0006" "74656e616e74" "0004" "61636d65"
EXPECTED_HEADER = "43535401" "04" "64656d6f" "00000001" "a0a1a2a3a4a5a6a7a8a9aaab"
EXPECTED_BLOB = EXPECTED_HEADER + "8e7d10412a" + "1acffa7fe9106b29ffa8d0d95d1838b2"  # ciphertext, tag


def main():
    from cryptography.exceptions import InvalidTag
    ctx = encode_context(CONTEXT)
    header = blob_header("demo", 1, IV)
    blob = seal(KEY, "demo", 1, IV, b"hello", CONTEXT)
    print("ctx    ", ctx.hex())
    print("header ", header.hex())
    print("AAD    ", (header + ctx).hex())
    print("blob   ", blob.hex())
    assert ctx.hex() == EXPECTED_CTX, "context encoding differs from docs/formats.md"
    assert header.hex() == EXPECTED_HEADER, "header differs from docs/formats.md"
    assert blob.hex() == EXPECTED_BLOB, "blob differs from docs/formats.md"
    assert encode_context({}) == b"\x00\x00"
    # Sorted by bytes, not by how they were given: upper case (0x41..) before lower case (0x61..).
    assert encode_context({"b": "", "a": "", "B": ""}).hex() == "0003" "000142" "0000" "000161" "0000" "000162" "0000"
    assert open_blob(KEY, blob, {"app": "billing", "tenant": "acme"}) == b"hello"
    for wrong in ({}, {"tenant": "acme"}, {"tenant": "acme", "app": "billing "}):
        try:
            open_blob(KEY, blob, wrong)
        except InvalidTag:
            continue
        raise AssertionError(f"context {wrong} should not authenticate")
    print("ok: encoding, blob and AAD as documented; another context does not authenticate")


if __name__ == "__main__":
    sys.exit(main())
