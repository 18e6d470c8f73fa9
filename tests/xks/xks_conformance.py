#!/usr/bin/env python3
"""XKS Proxy API (v1.0.3) conformance suite, written from the spec, against a running listener.

It signs requests with its own SigV4 implementation (written from the AWS Signature Version 4
documentation with hashlib/hmac only; it shares no code with custodyd) and also with
`curl --aws-sigv4`. Configuration comes from the environment that scripts/dev-up writes to
.dev/env: CUSTODY_XKS_ENDPOINT, CUSTODY_XKS_URI_PREFIX, CUSTODY_XKS_ACCESS_KEY_ID,
CUSTODY_XKS_SECRET_ACCESS_KEY, CUSTODY_XKS_KEY_ID, CUSTODY_XKS_ENCRYPT_ONLY_KEY_ID,
CUSTODY_XKS_DECRYPT_ONLY_KEY_ID, CUSTODY_XKS_IMPOTENT_KEY_ID, and for https CUSTODY_XKS_CA,
CUSTODY_XKS_CLIENT_CERT, CUSTODY_XKS_CLIENT_KEY. Optional: CUSTODY_XKS_REGION (us-east-1),
CUSTODY_XKS_SECOND_ACCESS_KEY_ID / CUSTODY_XKS_SECOND_SECRET_ACCESS_KEY (the rotation credential).

    python3 tests/xks/xks_conformance.py            every case; exit 0 when all pass
    python3 tests/xks/xks_conformance.py -k mtls    only cases whose name contains "mtls"
"""
import base64
import datetime
import hashlib
import hmac
import http.client
import json
import os
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.parse

ENV = os.environ
REGION = ENV.get("CUSTODY_XKS_REGION", "us-east-1")
SERVICE = "kms-xks-proxy"
ENDPOINT = urllib.parse.urlsplit(ENV["CUSTODY_XKS_ENDPOINT"])
PREFIX = ENV.get("CUSTODY_XKS_URI_PREFIX", "")
ACCESS_KEY = ENV["CUSTODY_XKS_ACCESS_KEY_ID"]
SECRET = ENV["CUSTODY_XKS_SECRET_ACCESS_KEY"]
KEY = ENV["CUSTODY_XKS_KEY_ID"]
ENCRYPT_ONLY = ENV["CUSTODY_XKS_ENCRYPT_ONLY_KEY_ID"]
DECRYPT_ONLY = ENV["CUSTODY_XKS_DECRYPT_ONLY_KEY_ID"]
IMPOTENT = ENV["CUSTODY_XKS_IMPOTENT_KEY_ID"]
HTTPS = ENDPOINT.scheme == "https"


# ---- SigV4, from the AWS documentation ("Create a signed AWS API request") ----
def _hmac(key, msg):
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def sigv4_headers(method, path, body, access_key, secret, when=None, region=REGION, service=SERVICE):
    when = when or datetime.datetime.now(datetime.timezone.utc)
    amz_date = when.strftime("%Y%m%dT%H%M%SZ")
    day = amz_date[:8]
    host = ENDPOINT.netloc
    headers = {"host": host, "x-amz-date": amz_date, "content-type": "application/json"}
    signed = sorted(headers)
    canonical_headers = "".join(f"{h}:{' '.join(headers[h].split())}\n" for h in signed)
    canonical_uri = urllib.parse.quote(path, safe="/-_.~")
    canonical = "\n".join([method, canonical_uri, "", canonical_headers, ";".join(signed),
                           hashlib.sha256(body).hexdigest()])
    scope = f"{day}/{region}/{service}/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    k = _hmac(("AWS4" + secret).encode(), day)
    for part in (region, service, "aws4_request"):
        k = _hmac(k, part)
    signature = hmac.new(k, to_sign.encode(), hashlib.sha256).hexdigest()
    headers["authorization"] = (f"AWS4-HMAC-SHA256 Credential={access_key}/{scope}, "
                                f"SignedHeaders={';'.join(signed)}, Signature={signature}")
    return headers


def tls_context(cert=None, key=None):
    ctx = ssl.create_default_context(cafile=ENV["CUSTODY_XKS_CA"])
    if cert:
        ctx.load_cert_chain(cert, key)
    return ctx


def connect(cert=ENV.get("CUSTODY_XKS_CLIENT_CERT"), key=ENV.get("CUSTODY_XKS_CLIENT_KEY")):
    if HTTPS:
        return http.client.HTTPSConnection(ENDPOINT.hostname, ENDPOINT.port, context=tls_context(cert, key), timeout=10)
    return http.client.HTTPConnection(ENDPOINT.hostname, ENDPOINT.port, timeout=10)


def call(method, path, payload=None, sign=True, access_key=ACCESS_KEY, secret=SECRET, tamper=None, conn=None, **kw):
    body = b"" if payload is None else (payload if isinstance(payload, bytes) else json.dumps(payload).encode())
    headers = sigv4_headers(method, path, body, access_key, secret, **kw) if sign else {"content-type": "application/json"}
    if tamper:
        tamper(headers)
    c = conn or connect()
    c.request(method, path, body=body, headers=headers)
    r = c.getresponse()
    data = r.read()
    if not conn:
        c.close()
    try:
        parsed = json.loads(data) if data else None
    except ValueError:
        parsed = data
    return r.status, parsed


def api(route):
    return f"{PREFIX}/kms/xks/v1/{route}"


def meta(op="Encrypt", **extra):
    m = {"awsPrincipalArn": "arn:aws:iam::123456789012:user/Alice",
         "kmsKeyArn": "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab",
         "kmsOperation": op, "kmsRequestId": "4112f4d6-db54-4af4-ae30-c55a22a8dfae"}
    m.update(extra)
    return m


def b64(b):
    return base64.b64encode(b).decode()


def unb64(s):
    return base64.b64decode(s, validate=True)


def encrypt(key, plaintext, aad=None, cdiv=True):
    body = {"requestMetadata": meta(), "plaintext": b64(plaintext), "encryptionAlgorithm": "AES_GCM"}
    if aad is not None:
        body["additionalAuthenticatedData"] = b64(aad)
    if cdiv:
        body["ciphertextDataIntegrityValueAlgorithm"] = "SHA_256"
    return call("POST", api(f"keys/{key}/encrypt"), body)


def decrypt_body(sealed, aad=None, **override):
    body = {"requestMetadata": meta("Decrypt"), "encryptionAlgorithm": "AES_GCM",
            "ciphertext": sealed["ciphertext"], "initializationVector": sealed["initializationVector"],
            "authenticationTag": sealed["authenticationTag"]}
    if "ciphertextMetadata" in sealed:
        body["ciphertextMetadata"] = sealed["ciphertextMetadata"]
    if aad is not None:
        body["additionalAuthenticatedData"] = b64(aad)
    body.update(override)
    return {k: v for k, v in body.items() if v is not None}


def decrypt(key, sealed, aad=None, **override):
    return call("POST", api(f"keys/{key}/decrypt"), decrypt_body(sealed, aad, **override))


def expect_error(result, status, name):
    got_status, body = result
    assert got_status == status, f"expected {status} {name}, got {got_status} {body}"
    assert isinstance(body, dict) and body.get("errorName") == name, f"expected errorName {name}, got {body}"
    msg = body.get("errorMessage", "")
    assert len(msg) < 512 and all(0x20 <= ord(ch) <= 0x7e for ch in msg), f"errorMessage not printable ASCII <512: {msg!r}"


# ---- the cases ----
CASES = []


def case(fn):
    CASES.append(fn)
    return fn


@case
def health_reports_fleet_and_active():
    status, body = call("POST", api("health"), {"requestMetadata": {"kmsRequestId": "h-1", "kmsOperation": "KmsHealthCheck"}})
    assert status == 200, (status, body)
    assert isinstance(body["xksProxyFleetSize"], int) and body["xksProxyFleetSize"] > 0
    for f in ("xksProxyVendor", "xksProxyModel", "ekmVendor"):
        assert isinstance(body[f], str) and body[f], f
    fleet = body["ekmFleetDetails"]
    assert 1 <= len(fleet) <= 10
    for e in fleet:
        assert set(e) >= {"id", "model", "healthStatus"}
        assert e["healthStatus"] in ("ACTIVE", "DEGRADED", "UNAVAILABLE")
    assert fleet[0]["healthStatus"] == "ACTIVE", fleet


@case
def metadata_usage_follows_the_key():
    expected = {KEY: ["ENCRYPT", "DECRYPT"], ENCRYPT_ONLY: ["ENCRYPT"], DECRYPT_ONLY: ["DECRYPT"], IMPOTENT: []}
    for key, usage in expected.items():
        status, body = call("POST", api(f"keys/{key}/metadata"), {"requestMetadata": meta("DescribeKey")})
        assert status == 200, (key, status, body)
        assert body["keySpec"] == "AES_256", body
        assert sorted(body["keyUsage"]) == sorted(usage), (key, body)
        assert body["keyStatus"] == "ENABLED", body


@case
def metadata_of_unknown_key_is_key_not_found():
    expect_error(call("POST", api("keys/no-such-key/metadata"), {"requestMetadata": meta("CreateKey")}), 404, "KeyNotFoundException")


@case
def encrypt_decrypt_round_trip_with_aad_and_cdiv():
    plaintext, aad = os.urandom(32), b"project=nile,department=marketing"
    status, sealed = encrypt(KEY, plaintext, aad)
    assert status == 200, (status, sealed)
    iv, ct, tag = unb64(sealed["initializationVector"]), unb64(sealed["ciphertext"]), unb64(sealed["authenticationTag"])
    cm = unb64(sealed["ciphertextMetadata"])
    assert len(iv) in (12, 16) and len(tag) == 16 and len(ct) == len(plaintext) and len(cm) <= 20
    # Appendix C: SHA-256 over aad || ciphertextMetadata || iv || ciphertext || tag.
    assert unb64(sealed["ciphertextDataIntegrityValue"]) == hashlib.sha256(aad + cm + iv + ct + tag).digest()
    status, opened = decrypt(KEY, sealed, aad)
    assert status == 200 and unb64(opened["plaintext"]) == plaintext, (status, opened)


@case
def encrypt_without_aad_or_cdiv():
    status, sealed = encrypt(KEY, b"Hello World!", None, cdiv=False)
    assert status == 200 and "ciphertextDataIntegrityValue" not in sealed, sealed
    status, opened = decrypt(KEY, sealed)
    assert status == 200 and unb64(opened["plaintext"]) == b"Hello World!"


@case
def aad_is_bound():
    _, sealed = encrypt(KEY, b"secret", b"aad-one")
    expect_error(decrypt(KEY, sealed, b"aad-two"), 400, "InvalidCiphertextException")
    expect_error(decrypt(KEY, sealed, None), 400, "InvalidCiphertextException")
    _, sealed = encrypt(KEY, b"secret", None)
    # The spec's example: metadata passed as AAD and no metadata must not decrypt.
    expect_error(decrypt(KEY, sealed, unb64(sealed["ciphertextMetadata"]), ciphertextMetadata=None), 400,
                 "InvalidCiphertextException")


@case
def ciphertext_metadata_is_bound():
    _, sealed = encrypt(KEY, b"secret", b"aad")
    cm = bytearray(unb64(sealed["ciphertextMetadata"]))
    cm[-1] ^= 1
    expect_error(decrypt(KEY, sealed, b"aad", ciphertextMetadata=b64(bytes(cm))), 400, "InvalidCiphertextException")
    expect_error(decrypt(KEY, sealed, b"aad", ciphertextMetadata=b64(b"\x09" * 5)), 400, "InvalidCiphertextException")


@case
def tampered_ciphertext_tag_or_iv_is_invalid_ciphertext():
    _, sealed = encrypt(KEY, b"0123456789", b"a")
    for field in ("ciphertext", "authenticationTag", "initializationVector"):
        raw = bytearray(unb64(sealed[field]))
        raw[0] ^= 0x80
        expect_error(decrypt(KEY, sealed, b"a", **{field: b64(bytes(raw))}), 400, "InvalidCiphertextException")
    expect_error(decrypt(KEY, sealed, b"a", authenticationTag=b64(b"short")), 400, "InvalidCiphertextException")
    expect_error(decrypt(KEY, sealed, b"a", ciphertext="%%%"), 400, "InvalidCiphertextException")


@case
def maximum_sizes_are_served():
    plaintext, aad = os.urandom(4300), os.urandom(8192)
    status, sealed = encrypt(KEY, plaintext, aad)
    assert status == 200, (status, sealed)
    status, opened = decrypt(KEY, sealed, aad)
    assert status == 200 and unb64(opened["plaintext"]) == plaintext
    expect_error(encrypt(KEY, os.urandom(4301)), 501, "UnsupportedOperationException")
    expect_error(encrypt(KEY, b"x", os.urandom(8193)), 501, "UnsupportedOperationException")


@case
def key_usage_is_enforced():
    status, sealed = encrypt(ENCRYPT_ONLY, b"only in", None)
    assert status == 200, (status, sealed)
    expect_error(decrypt(ENCRYPT_ONLY, sealed), 400, "InvalidKeyUsageException")
    expect_error(encrypt(DECRYPT_ONLY, b"x"), 400, "InvalidKeyUsageException")
    expect_error(encrypt(IMPOTENT, b"x"), 400, "InvalidKeyUsageException")
    expect_error(decrypt(IMPOTENT, sealed), 400, "InvalidKeyUsageException")
    # The decrypt-only key passes the usage check: a ciphertext of another key fails as ciphertext.
    expect_error(decrypt(DECRYPT_ONLY, sealed), 400, "InvalidCiphertextException")


@case
def validation_errors():
    path = api(f"keys/{KEY}/encrypt")
    good = {"requestMetadata": meta(), "plaintext": b64(b"x"), "encryptionAlgorithm": "AES_GCM"}
    expect_error(call("POST", path, {k: v for k, v in good.items() if k != "requestMetadata"}), 400, "ValidationException")
    expect_error(call("POST", path, dict(good, encryptionAlgorithm="AES_CBC")), 400, "ValidationException")
    expect_error(call("POST", path, dict(good, plaintext="not base64!")), 400, "ValidationException")
    expect_error(call("POST", path, dict(good, ciphertextDataIntegrityValueAlgorithm="MD5")), 400, "ValidationException")
    expect_error(call("POST", path, b"{not json"), 400, "ValidationException")
    expect_error(call("POST", path, dict(good, requestMetadata={"kmsOperation": "Encrypt"})), 400, "ValidationException")


@case
def unknown_kms_operation_and_metadata_fields_are_accepted():
    body = {"requestMetadata": meta("BulkEncrypt", someFutureField="x"), "plaintext": b64(b"x"), "encryptionAlgorithm": "AES_GCM"}
    status, sealed = call("POST", api(f"keys/{KEY}/encrypt"), body)
    assert status == 200, (status, sealed)


@case
def unknown_paths_and_methods():
    expect_error(call("POST", api(f"keys/{KEY}/sign"), {"requestMetadata": meta()}), 404, "InvalidUriPathException")
    expect_error(call("POST", "/wrong-prefix/kms/xks/v1/health", {"requestMetadata": meta()}), 404, "InvalidUriPathException")
    status, _ = call("GET", api("health"))
    assert status == 405, status
    status, _ = call("GET", api(f"keys/{KEY}/metadata"))
    assert status == 405, status


@case
def unauthenticated_requests_get_401():
    body = {"requestMetadata": meta("DescribeKey")}
    path = api(f"keys/{KEY}/metadata")
    expect_error(call("POST", path, body, sign=False), 401, "AuthenticationFailedException")
    expect_error(call("POST", path, body, secret=SECRET[:-1] + ("A" if SECRET[-1] != "A" else "B")), 401, "AuthenticationFailedException")
    expect_error(call("POST", path, body, access_key="AKIAUNKNOWNUNKNOWNXX"), 401, "AuthenticationFailedException")
    expect_error(call("POST", path, body, region="eu-west-9"), 401, "AuthenticationFailedException")
    expect_error(call("POST", path, body, service="kms"), 401, "AuthenticationFailedException")

    def swap_body_after_signing(h):
        h["x-amz-date"] = h["x-amz-date"][:-3] + ("00Z" if not h["x-amz-date"].endswith("00Z") else "01Z")
    expect_error(call("POST", path, body, tamper=swap_body_after_signing), 401, "AuthenticationFailedException")


@case
def clock_skew_limit_is_five_minutes():
    body = {"requestMetadata": meta("DescribeKey")}
    path = api(f"keys/{KEY}/metadata")
    now = datetime.datetime.now(datetime.timezone.utc)
    for minutes in (4, -4):
        status, got = call("POST", path, body, when=now + datetime.timedelta(minutes=minutes))
        assert status == 200, (minutes, status, got)
    for minutes in (6, -6):
        expect_error(call("POST", path, body, when=now + datetime.timedelta(minutes=minutes)), 401, "AuthenticationFailedException")


@case
def second_credential_for_rotation():
    second, secret = ENV.get("CUSTODY_XKS_SECOND_ACCESS_KEY_ID"), ENV.get("CUSTODY_XKS_SECOND_SECRET_ACCESS_KEY")
    if not second:
        return "skipped: no CUSTODY_XKS_SECOND_ACCESS_KEY_ID"
    status, body = call("POST", api(f"keys/{KEY}/metadata"), {"requestMetadata": meta("DescribeKey")}, access_key=second, secret=secret)
    assert status == 200, (status, body)


@case
def curl_aws_sigv4_is_accepted():
    body = json.dumps({"requestMetadata": meta("DescribeKey")})
    cmd = ["curl", "-sS", "-o", "-", "-w", "\n%{http_code}", "--aws-sigv4", f"aws:amz:{REGION}:{SERVICE}",
           "--user", f"{ACCESS_KEY}:{SECRET}", "-H", "content-type: application/json", "--data-binary", body,
           f"{ENV['CUSTODY_XKS_ENDPOINT']}{api(f'keys/{KEY}/metadata')}"]
    if HTTPS:
        cmd[1:1] = ["--cacert", ENV["CUSTODY_XKS_CA"], "--cert", ENV["CUSTODY_XKS_CLIENT_CERT"], "--key", ENV["CUSTODY_XKS_CLIENT_KEY"]]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
    text, _, code = out.stdout.rpartition("\n")
    assert code == "200", (out.stdout, out.stderr)
    assert json.loads(text)["keySpec"] == "AES_256"
    # Signed with a wrong secret, curl's request is refused.
    cmd[cmd.index(f"{ACCESS_KEY}:{SECRET}")] = f"{ACCESS_KEY}:{'x' * 43}"
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
    assert out.stdout.rpartition("\n")[2] == "401", out.stdout


@case
def keep_alive_connection_serves_many():
    conn = connect()
    for i in range(5):
        status, _ = call("POST", api(f"keys/{KEY}/metadata"), {"requestMetadata": meta("DescribeKey")}, conn=conn)
        assert status == 200
    conn.close()


def _handshake_refused(cert, key):
    try:
        status, _ = call("POST", api("health"), {"requestMetadata": {"kmsRequestId": "x", "kmsOperation": "x"}},
                         conn=connect(cert, key))
    except (ssl.SSLError, ConnectionError, OSError):
        return True
    return False


@case
def mtls_client_certificates():
    if not HTTPS or not ENV.get("CUSTODY_XKS_CLIENT_CERT"):
        return "skipped: plain HTTP or no client certificate"
    assert not _handshake_refused(ENV["CUSTODY_XKS_CLIENT_CERT"], ENV["CUSTODY_XKS_CLIENT_KEY"]), "the dev client certificate was refused"
    assert _handshake_refused(None, None), "a client without a certificate was served"
    with tempfile.TemporaryDirectory() as d:
        key, cert = os.path.join(d, "k.pem"), os.path.join(d, "c.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                        "-keyout", key, "-out", cert, "-days", "1", "-subj", "/CN=self-signed"],
                       check=True, capture_output=True)
        assert _handshake_refused(cert, key), "a self-signed client certificate was served"
        expired = ENV.get("CUSTODY_XKS_EXPIRED_CLIENT_CERT")
        if expired:
            assert _handshake_refused(expired, ENV["CUSTODY_XKS_EXPIRED_CLIENT_KEY"]), "an expired client certificate was served"


def main(argv):
    only = argv[argv.index("-k") + 1] if "-k" in argv else ""
    failed = 0
    for fn in CASES:
        if only not in fn.__name__:
            continue
        started = time.monotonic()
        try:
            note = fn()
            print(f"PASS {fn.__name__} ({(time.monotonic() - started) * 1000:.0f} ms){' ' + note if note else ''}")
        except Exception as e:  # a failed assertion or an unexpected answer
            failed += 1
            print(f"FAIL {fn.__name__}: {type(e).__name__}: {e}")
    print(f"{'OK' if not failed else 'FAILED'}: {failed} failing")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
