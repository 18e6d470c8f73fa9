#!/usr/bin/env python3
"""Proves the derive computation against a running custodyd: imports a 32-byte HMAC key we know
through BYOK, asks custody to derive with an info string, and computes the same HKDF-Expand here
with Python's standard library. Needs a dev instance (scripts/dev-up) and python3-cryptography
(for the import payload only).

    . .dev/env && python3 docs/examples/derive_byok.py
"""
import os
import sys

sys.dont_write_bytecode = True  # leave no __pycache__ in docs/examples
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from custody_http import b64, import_key, kcv, service, unb64  # noqa: E402
from hkdf_expand import hkdf_expand  # noqa: E402


def main():
    key = os.urandom(32)
    name = "docs-derive-" + os.urandom(4).hex()
    imported, method = import_key(name, "hmac-sha256", key, ["derive"])
    assert imported["kcv"] == kcv("hmac-sha256", key), "the KCV is HMAC-SHA256(K, 16 zero bytes)[:3]"
    print(f"imported {name} v{imported['version']} with {method}, kcv {imported['kcv']}")
    for info, length in ((b"tenant-42", 32), (b"", 1), (bytes(range(256)) * 4, 1024)):
        got = service("POST", f"/v1/keys/{name}/derive", {"info": b64(info), "length": length})
        assert unb64(got["key"]) == hkdf_expand(key, info, length), (info[:16], length)
        print(f"info {len(info):4d} bytes, length {length:4d}: custody = local HKDF-Expand "
              f"({unb64(got['key'])[:8].hex()}...)")
    print("ok")


if __name__ == "__main__":
    sys.exit(main())
