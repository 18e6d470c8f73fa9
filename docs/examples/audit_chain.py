#!/usr/bin/env python3
"""Checks a custody audit log the way docs/formats.md describes: seq counts 1, 2, ...; each prev
is the SHA-256 of the previous line's bytes (64 zeros for seq 1); each checkpoint's signature
(ECDSA P-256, SHA-256, DER) covers "custody.audit.checkpoint.v1\\n<seq>\\n<prev>\\n". Python's
standard library and the openssl command.

    python3 docs/examples/audit_chain.py            # the fixed example of docs/formats.md
    . .dev/env && python3 docs/examples/audit_chain.py --live
        # the running daemon's log (path from admin health), checked against the attestation key
        # and the audit sequence and head of a fresh attestation report (catches a cut-off tail)
"""
import base64
import hashlib
import json
import os
import subprocess
import sys
import tempfile

GENESIS = "0" * 64


def checkpoint_message(seq, prev):
    return f"custody.audit.checkpoint.v1\n{seq}\n{prev}\n".encode()


def verify_signature(public_key_pem, message, signature):
    with tempfile.TemporaryDirectory() as tmp:
        paths = [os.path.join(tmp, n) for n in ("pub.pem", "msg", "sig")]
        for p, data in zip(paths, (public_key_pem.encode(), message, signature)):
            with open(p, "wb") as f:
                f.write(data)
        return subprocess.run(["openssl", "dgst", "-sha256", "-verify", paths[0], "-signature", paths[2], paths[1]],
                              capture_output=True).returncode == 0


def verify(lines, public_key_pem):
    """lines: the records' bytes without newlines. Returns (seq -> line hash, checkpoints checked);
    raises ValueError naming the first bad record."""
    hashes, checkpoints, prev = {}, 0, None
    for n, line in enumerate(lines, 1):
        record = json.loads(line)
        seq = record["seq"]
        if prev is None:
            prev = GENESIS if seq == 1 else record["prev"]  # a log whose oldest files were removed
            expected_seq = seq
        if seq != expected_seq:
            raise ValueError(f"line {n}: seq {seq}, expected {expected_seq}")
        if record["prev"] != prev:
            raise ValueError(f"line {n} (seq {seq}): prev does not match the previous line")
        if record["type"] == "checkpoint":
            if not verify_signature(public_key_pem, checkpoint_message(seq, record["prev"]),
                                    base64.b64decode(record["signature"])):
                raise ValueError(f"line {n} (seq {seq}): checkpoint signature does not verify")
            checkpoints += 1
        prev = hashlib.sha256(line).hexdigest()
        hashes[seq] = prev
        expected_seq = seq + 1
    return hashes, checkpoints


FIXED_PUBLIC_KEY = """-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAErdUaNG7ehEhOw+RgKVajK9kOrMkq
F8xFKUav0x1fcXGp6YMgU/vfjXFPQMZQEAHeyfFtRV3mAzsgmSG+5GvzOQ==
-----END PUBLIC KEY-----
"""
FIXED_LOG = [line.encode() for line in (
    '{"seq":1,"time":"2026-12-01T09:00:00.000001Z","prev":"0000000000000000000000000000000000000000000000000000000000000000","type":"daemon.start","request_id":"-","client":{"uid":998,"gid":998,"pid":4242},"result":"ok","version":"0.1.0"}',
    '{"seq":2,"time":"2026-12-01T09:00:01.250000Z","prev":"547070c24fa3743608577c3ca74496524055261f081e1392dcfe201b7077cab5","type":"wrap","request_id":"req-1","client":{"uid":1000,"gid":1000,"pid":5151},"result":"ok","key":"demo","version":1,"context_sha256":"27550122262f0eff67f3799e82825bbf970191ad241513a94102dd0c923c30be"}',
    '{"seq":3,"time":"2026-12-01T09:00:02.500000Z","prev":"02e488ae114bb45955c862e6ac48d52f9d76523b7027f167e3e4aa49cecd378f","type":"unwrap","request_id":"req-2","client":{"uid":1001,"gid":1001,"pid":5152},"result":"permission_denied","key":"demo"}',
    '{"seq":4,"time":"2026-12-01T09:00:03.000000Z","prev":"60a29753f84f4c0629192d6e3ec409a67d13bd8fef41063c91ce4401806fc3f2","type":"checkpoint","request_id":"-","client":{"uid":998,"gid":998,"pid":4242},"result":"ok","signature":"MEQCIFIoWuFZ9qnxcIpJk6pFpZGlbtjU6Slg9L54MecKDwznAiA4xxWBciV1PaN2ntJn20DkvoH60dJAwC8SZZkZqq5UvA=="}',
)]
FIXED_HEAD = "4fd9c4c056cfe7e45d8360ee43cc8c595bfbb9670412866a0151f492e12205da"


def fails(lines, public_key_pem=FIXED_PUBLIC_KEY):
    try:
        verify(lines, public_key_pem)
    except ValueError as e:
        return str(e)
    return None


def fixed_example():
    hashes, checkpoints = verify(FIXED_LOG, FIXED_PUBLIC_KEY)
    for seq, h in hashes.items():
        print(f"seq {seq}: SHA-256 of the line = {h}")
    assert hashes[4] == FIXED_HEAD and checkpoints == 1
    # context_sha256 of record 2 is SHA-256 of the ctx encoding of {"tenant": "acme", "app": "billing"}.
    ctx = bytes.fromhex("00020003617070000762696c6c696e67000674656e616e74000461636d65")
    assert json.loads(FIXED_LOG[1])["context_sha256"] == hashlib.sha256(ctx).hexdigest()
    changed = [FIXED_LOG[0], FIXED_LOG[1].replace(b'"uid":1000', b'"uid":1002'), *FIXED_LOG[2:]]
    print("a changed record:   ", fails(changed))
    print("a removed record:   ", fails([FIXED_LOG[0], *FIXED_LOG[2:]]))
    print("records reordered:  ", fails([FIXED_LOG[0], FIXED_LOG[2], FIXED_LOG[1], FIXED_LOG[3]]))
    resigned = FIXED_LOG[3].replace(b'"signature":"MEQ', b'"signature":"MEU', 1)
    print("a forged checkpoint:", fails([*FIXED_LOG[:3], resigned]))
    assert fails(changed) and fails([FIXED_LOG[0], *FIXED_LOG[2:]]) and fails([*FIXED_LOG[:3], resigned])
    # The chain alone cannot see a cut-off tail: the first records are a valid log by themselves.
    assert fails(FIXED_LOG[:2]) is None
    print("the last two records cut off: the chain alone still verifies; compare with an attested sequence")
    print("ok")


def live():
    sys.dont_write_bytecode = True  # leave no __pycache__ in docs/examples
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from custody_http import admin
    envelope = admin("POST", "/v1/attestation", {})
    attested = json.loads(base64.b64decode(envelope["report"]))["audit"]
    path = admin("GET", "/v1/health")["audit"]["path"]
    with open(path, "rb") as f:
        data = f.read()
    lines = data[:data.rfind(b"\n") + 1].splitlines()  # complete lines only: the daemon keeps writing
    hashes, checkpoints = verify(lines, envelope["public_key"])
    print(f"{path}: {len(lines)} records, chain intact, {checkpoints} checkpoint signature(s) verified")
    seq, head = attested["sequence"], attested["head"]
    if seq not in hashes:
        raise SystemExit(f"the log ends before seq {seq}, which the daemon attested: records were cut off")
    if hashes[seq] != head:
        raise SystemExit(f"record {seq} is not the one the daemon attested")
    print(f"attested sequence {seq} and head {head[:16]}... are in the log: nothing before them was cut off")
    print("ok")


if __name__ == "__main__":
    live() if sys.argv[1:] == ["--live"] else fixed_example()
