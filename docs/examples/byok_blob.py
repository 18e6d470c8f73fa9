#!/usr/bin/env python3
"""Proves the blob format against a running custodyd: imports a 32-byte AES key we know through
BYOK, has custody wrap with a context, decrypts custody's blob here with AES-GCM using the
documented AAD, and has custody unwrap a blob made here. Needs a dev instance (scripts/dev-up)
and python3-cryptography.

    . .dev/env && python3 docs/examples/byok_blob.py
"""
import os
import sys

sys.dont_write_bytecode = True  # leave no __pycache__ in docs/examples
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from custody_http import b64, import_key, service, unb64  # noqa: E402
from blob_format import encode_context, open_blob, parse_blob, seal  # noqa: E402


def main():
    from cryptography.exceptions import InvalidTag

    key = os.urandom(32)  # the key material: known to us, imported into the token
    name = "docs-blob-" + os.urandom(4).hex()
    imported, method = import_key(name, "aes-256-gcm", key, ["wrap", "unwrap"])
    print(f"imported {name} v{imported['version']} with {method}, kcv {imported['kcv']}")

    context = {"tenant": "acme", "purpose": "docs"}
    plaintext = b"anyone holding the key bytes can decrypt this"
    wrapped = service("POST", f"/v1/keys/{name}/wrap", {"plaintext": b64(plaintext), "context": context})
    blob = unb64(wrapped["ciphertext"])
    key_name, version, header, iv, ciphertext, tag = parse_blob(blob)
    print("blob from custody:", blob.hex())
    print(f"  header {header.hex()}  (key {key_name!r}, version {version}, iv {iv.hex()})")
    print(f"  ciphertext {ciphertext.hex()}")
    print(f"  tag {tag.hex()}")
    print(f"  AAD = header || ctx, ctx = {encode_context(context).hex()}")
    assert key_name == name and version == wrapped["key_version"]

    # 1. custody's blob, decrypted here with the documented AAD.
    assert open_blob(key, blob, context) == plaintext
    print("decrypted locally with AES-GCM:", open_blob(key, blob, context).decode())
    try:
        open_blob(key, blob, {"tenant": "other", "purpose": "docs"})
        raise AssertionError("another context must not authenticate")
    except InvalidTag:
        print("another context: tag mismatch, as it should be")

    # 2. a blob made here, unwrapped by custody.
    mine = seal(key, name, version, os.urandom(12), b"made outside custody", context)
    back = service("POST", f"/v1/keys/{name}/unwrap", {"ciphertext": b64(mine), "context": context})
    assert unb64(back["plaintext"]) == b"made outside custody"
    print("custody unwrapped a blob made locally:", unb64(back["plaintext"]).decode())
    print("ok")


if __name__ == "__main__":
    sys.exit(main())
