#!/usr/bin/env python3
"""Fetches an attestation envelope from a running custodyd and checks it the way docs/formats.md
describes: the signature over the exact report bytes (ECDSA P-256, SHA-256, DER) with OpenSSL's
command line, key_id = SHA-256 of the public key's DER, the nonce echoed. Needs a dev instance
(scripts/dev-up); optional argument: a pinned public key PEM to check key_id against.

    . .dev/env && python3 docs/examples/attestation.py [pinned.pem]
"""
import base64
import hashlib
import json
import os
import subprocess
import sys
import tempfile

sys.dont_write_bytecode = True  # leave no __pycache__ in docs/examples
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from custody_http import b64, service  # noqa: E402


def spki_der(pem):
    return subprocess.run(["openssl", "pkey", "-pubin", "-outform", "DER"], input=pem.encode(),
                          check=True, capture_output=True).stdout


def main():
    nonce = os.urandom(16)
    envelope = service("POST", "/v1/attestation", {"nonce": b64(nonce)})
    report_bytes = base64.b64decode(envelope["report"])
    signature = base64.b64decode(envelope["signature"])
    with tempfile.TemporaryDirectory() as tmp:
        paths = {n: os.path.join(tmp, n) for n in ("report.json", "sig.der", "pub.pem")}
        for n, data in (("report.json", report_bytes), ("sig.der", signature), ("pub.pem", envelope["public_key"].encode())):
            with open(paths[n], "wb") as f:
                f.write(data)
        out = subprocess.run(["openssl", "dgst", "-sha256", "-verify", paths["pub.pem"], "-signature",
                              paths["sig.der"], paths["report.json"]], capture_output=True, text=True)
        print("openssl:", out.stdout.strip())
        assert out.returncode == 0 and out.stdout.strip() == "Verified OK"
        tampered = report_bytes.replace(b'"nonce":"', b'"nonce":"A', 1)
        with open(paths["report.json"], "wb") as f:
            f.write(tampered)
        bad = subprocess.run(["openssl", "dgst", "-sha256", "-verify", paths["pub.pem"], "-signature",
                              paths["sig.der"], paths["report.json"]], capture_output=True, text=True)
        assert bad.returncode != 0, "a changed report must not verify"
        print("openssl on a changed report:", bad.stdout.strip())

    key_id = hashlib.sha256(spki_der(envelope["public_key"])).hexdigest()
    assert key_id == envelope["key_id"], "key_id is SHA-256 of the SPKI DER"
    if len(sys.argv) > 1:
        with open(sys.argv[1]) as f:
            assert hashlib.sha256(spki_der(f.read())).hexdigest() == key_id, "not the pinned attestation key"
        print("key_id matches the pinned key")
    report = json.loads(report_bytes)
    assert report["format"] == "custody.attestation.v1"
    assert base64.b64decode(report["nonce"]) == nonce, "the nonce must be echoed"
    print("key_id", key_id)
    print("report members:", ", ".join(report))
    print("audit:", json.dumps(report["audit"]))
    for key in report["keys"]:
        for v in key["versions"]:
            a = v["object"]["attributes"]
            print(f"  {key['name']} v{v['version']} {v['origin']}: sensitive={a['sensitive']} "
                  f"extractable={a['extractable']} never_extractable={a['never_extractable']} local={a['local']}")
    print("ok")


if __name__ == "__main__":
    sys.exit(main())
