#!/usr/bin/env python3
"""What operators sign: proposes an admin request on a running custodyd, decodes its challenge,
signs SHA-256 of the challenge bytes on operator-a's token, checks that signature with OpenSSL
against the operator's public key, submits it, shows that the same operator cannot approve
twice, and cancels the request. Nothing changes: disable-key always needs two approvals.
Needs a dev instance (scripts/dev-up) with its key "demo".

    . .dev/env && python3 docs/examples/admin_challenge.py
"""
import hashlib
import json
import os
import subprocess
import sys
import tempfile

sys.dont_write_bytecode = True  # leave no __pycache__ in docs/examples
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from custody_http import DEV_DIR, CustodyError, admin, approve, sign_challenge_on_token, unb64  # noqa: E402


def main():
    proposed = admin("POST", "/v1/admin/requests",
                     {"operation": "disable-key", "params": {"name": "demo"}}, expect=(201,))
    request = proposed["request"]
    challenge = unb64(proposed["challenge"])
    print("challenge bytes:", challenge.decode())
    fields = json.loads(challenge)
    assert list(fields) == ["format", "id", "operation", "params", "created_at", "expires_at", "nonce", "instance_id"]
    assert fields["format"] == "custody.admin-request.v1" and fields["id"] == request["id"]
    assert fields["params"] == request["params"] and fields["expires_at"] == request["expires_at"]
    print("SHA-256 of the challenge:", hashlib.sha256(challenge).hexdigest())

    signature = sign_challenge_on_token("operator-a", challenge)
    pub = os.path.join(DEV_DIR, "operator-a.pub.pem")
    with tempfile.TemporaryDirectory() as tmp:
        c, s = os.path.join(tmp, "challenge.json"), os.path.join(tmp, "sig.der")
        with open(c, "wb") as f:
            f.write(challenge)
        with open(s, "wb") as f:
            f.write(signature)
        out = subprocess.run(["openssl", "dgst", "-sha256", "-verify", pub, "-signature", s, c],
                             capture_output=True, text=True)
        print("openssl, operator-a's public key:", out.stdout.strip())
        assert out.returncode == 0

    after = approve(request["id"], proposed["challenge"], "operator-a")
    print(f"approved by operator-a: state {after['state']}, {len(after['approvals'])} of {after['required']}")
    assert after["state"] == "pending" and [a["operator"] for a in after["approvals"]] == ["operator-a"]
    try:
        approve(request["id"], proposed["challenge"], "operator-a")
        raise AssertionError("a second approval by the same operator must be refused")
    except CustodyError as e:
        print("operator-a again:", e)
        assert e.status == 409 and e.code == "failed_precondition"
    cancelled = admin("POST", f"/v1/admin/requests/{request['id']}/cancel")["request"]
    print("cancelled:", cancelled["state"])
    assert cancelled["state"] == "cancelled"
    print("ok")


if __name__ == "__main__":
    sys.exit(main())
