"""A small client for the examples in docs/formats.md: HTTP/1.1 + JSON over custodyd's Unix
sockets with nothing but Python's standard library, and the two-operator approval the dev
instance of scripts/dev-up needs for admin changes (signed on the operators' SoftHSMv2 tokens
with pkcs11-tool, exactly as an operator would by hand).

Environment (all optional; the defaults match a dev instance made by scripts/dev-up):
  CUSTODY_SERVICE_SOCKET, CUSTODY_ADMIN_SOCKET   the sockets (else /run/custody/*.sock)
  CUSTODY_DEV_DIR                                the dev instance's directory (default .dev)
  CUSTODY_OPERATOR_MODULE                        PKCS#11 module of the operator tokens
  CUSTODY_OPERATOR_A_PIN_FILE, ..._B_PIN_FILE    PIN files of operator-a / operator-b
  SOFTHSM2_CONF                                  default: $CUSTODY_DEV_DIR/softhsm2.conf
"""
import base64
import hashlib
import http.client
import json
import os
import socket
import subprocess
import tempfile

SERVICE_SOCKET = os.environ.get("CUSTODY_SERVICE_SOCKET", "/run/custody/service.sock")
ADMIN_SOCKET = os.environ.get("CUSTODY_ADMIN_SOCKET", "/run/custody/admin.sock")
DEV_DIR = os.environ.get("CUSTODY_DEV_DIR", ".dev")


class CustodyError(Exception):
    def __init__(self, status, body):
        error = body.get("error", {}) if isinstance(body, dict) else {}
        super().__init__(f"HTTP {status} {error.get('code')}: {error.get('message')}")
        self.status = status
        self.code = error.get("code")


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout):
        super().__init__("custody", timeout=timeout)
        self._path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self._path)
        self.sock = s


def request(socket_path, method, path, body=None, timeout=30):
    """One request; returns (status, parsed JSON or text, headers)."""
    conn = _UnixConnection(socket_path, timeout)
    try:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if data is not None else {}
        conn.request(method, path, body=data, headers=headers)
        r = conn.getresponse()
        raw = r.read()
        ctype = r.getheader("Content-Type", "")
        parsed = json.loads(raw) if ctype.startswith("application/json") else raw.decode()
        return r.status, parsed, {k.lower(): v for k, v in r.getheaders()}
    finally:
        conn.close()


def call(socket_path, method, path, body=None, expect=(200,)):
    """A request that must succeed: raises CustodyError on any other status."""
    status, parsed, _ = request(socket_path, method, path, body)
    if status not in expect:
        raise CustodyError(status, parsed)
    return parsed


def service(method, path, body=None, expect=(200,)):
    return call(SERVICE_SOCKET, method, path, body, expect)


def admin(method, path, body=None, expect=(200,)):
    return call(ADMIN_SOCKET, method, path, body, expect)


def b64(data):
    return base64.b64encode(data).decode()


def unb64(text):
    return base64.b64decode(text, validate=True)


# --- operators (dev instance: SoftHSMv2 tokens "operator-a" and "operator-b", key label "approval")

OPERATORS = ("operator-a", "operator-b")


def _operator_env():
    env = dict(os.environ)
    env.setdefault("SOFTHSM2_CONF", os.path.join(DEV_DIR, "softhsm2.conf"))
    return env


def _operator_pin(operator):
    var = "CUSTODY_OPERATOR_" + operator[-1].upper() + "_PIN_FILE"
    path = os.environ.get(var, os.path.join(DEV_DIR, operator + ".pin"))
    with open(path) as f:
        return f.read().strip()


def sign_challenge_on_token(operator, challenge):
    """ECDSA P-256 over SHA-256(challenge), made on the operator's token, DER encoded.

    SoftHSMv2 2.6.1 has no CKM_ECDSA_SHA256, so the digest is made here and the token signs it
    with CKM_ECDSA (pkcs11-tool -m ECDSA): the same signature an ECDSA-SHA256 token would make."""
    module = os.environ.get("CUSTODY_OPERATOR_MODULE", "/usr/lib/softhsm/libsofthsm2.so")
    with tempfile.TemporaryDirectory() as tmp:
        digest = os.path.join(tmp, "digest.bin")
        sig = os.path.join(tmp, "sig.der")
        with open(digest, "wb") as f:
            f.write(hashlib.sha256(challenge).digest())
        subprocess.run(["pkcs11-tool", "--module", module, "--token-label", operator, "--login",
                        "--pin", _operator_pin(operator), "--sign", "-m", "ECDSA",
                        "--signature-format", "openssl", "--label", "approval",
                        "-i", digest, "-o", sig],
                       check=True, env=_operator_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        with open(sig, "rb") as f:
            return f.read()


def approve(request_id, challenge_b64, operator):
    signature = sign_challenge_on_token(operator, unb64(challenge_b64))
    return admin("POST", f"/v1/admin/requests/{request_id}/approvals",
                 {"operator": operator, "signature": b64(signature)})["request"]


def propose_and_approve(operation, params):
    """Proposes an admin change and has both dev operators approve it; returns its result."""
    proposed = admin("POST", "/v1/admin/requests", {"operation": operation, "params": params}, expect=(201,))
    request = proposed["request"]
    for operator in OPERATORS:
        if request["state"] != "pending":
            break
        request = approve(request["id"], proposed["challenge"], operator)
    if request["state"] != "executed":
        raise RuntimeError(f"{operation} ended {request['state']}: {request.get('error')}")
    return request["result"]


# --- BYOK (docs/formats.md, "Import payloads")

def kcv(algorithm, key):
    """The key check value custody reports: 3 bytes, upper-case hex."""
    zeros = bytes(16)
    if algorithm == "hmac-sha256":
        import hmac
        return hmac.new(key, zeros, hashlib.sha256).digest()[:3].hex().upper()
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    enc = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    return (enc.update(zeros) + enc.finalize())[:3].hex().upper()


def rsa_payload(job_public_key_pem, method, key):
    """RSA-OAEP(E) || AES-KWP(E, K) for the rsa-oaep-* import methods, E a fresh AES-256 key."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding
    from cryptography.hazmat.primitives.keywrap import aes_key_wrap_with_padding
    digest = hashes.SHA256() if "-sha256-" in method else hashes.SHA1()
    public = serialization.load_pem_public_key(job_public_key_pem.encode())
    e = os.urandom(32)
    wrapped_e = public.encrypt(e, padding.OAEP(mgf=padding.MGF1(digest), algorithm=digest, label=None))
    return wrapped_e + aes_key_wrap_with_padding(e, key)


def rsa_method():
    """The rsa-oaep-* import method this token offers, SHA-256 preferred."""
    methods = admin("GET", "/v1/admin/import-jobs")["methods"]
    rsa = [m for m in methods if m.startswith("rsa-oaep-")]
    if not rsa:
        raise RuntimeError(f"the token offers no rsa-oaep-* import method: {methods}")
    return sorted(rsa, key=lambda m: ("-sha256-" not in m, m))[0]


def import_key(name, algorithm, key, operations):
    """Imports the 32 bytes `key` as key `name` through a one-time import job; returns the import answer."""
    method = rsa_method()
    result = propose_and_approve("create-import-job", {
        "key_name": name, "algorithm": algorithm, "method": method,
        "policy": [{"uid": os.getuid(), "operations": operations}]})
    job = result["import_job"]
    payload = rsa_payload(job["public_key"], method, key)
    return admin("POST", f"/v1/admin/import-jobs/{job['id']}/import",
                 {"wrapped_key": b64(payload), "kcv": kcv(algorithm, key)}), method
