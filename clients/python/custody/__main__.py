"""python3 -m custody: custodyctl's data-plane commands for scripts, plus envelope files.

Same commands, options, output and exit status as custodyctl: 0 success, 1 refused by the
daemon (4xx), 2 usage or input error, 3 daemon unreachable or unavailable (5xx), 4 verification
failed (an attestation that does not check out, an envelope that does not authenticate).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import os
import re
import sys
from typing import Dict, List, Optional

from .client import Client
from .errors import (ConnectionFailed, CryptographyMissing, CustodyError, EnvelopeError, ProtocolError,
                     VerificationFailed, VerificationUnavailable)

OK, REFUSED, USAGE, UNAVAILABLE, VERIFY_FAILED = 0, 1, 2, 3, 4
PROG = "custody"


class UsageError(Exception):
    pass


def _out(text: str) -> None:
    sys.stdout.write(text)


def _context(pairs: Optional[List[str]]) -> Dict[str, str]:
    ctx: Dict[str, str] = {}
    for p in pairs or []:
        key, eq, value = p.partition("=")
        if not eq or not key:
            raise UsageError(f"--context takes key=value, got '{p}'")
        if len(key.encode()) > MAX_CONTEXT_KEY or len(value.encode()) > MAX_CONTEXT_VALUE:
            raise UsageError(f"a --context key is 1..{MAX_CONTEXT_KEY} bytes and a value 0..{MAX_CONTEXT_VALUE} bytes")
        if key in ctx:
            raise UsageError(f"--context names '{key}' twice")
        ctx[key] = value
    return ctx


KEY_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")
MAX_CONTEXT_KEY, MAX_CONTEXT_VALUE, MAX_WRAP_PLAINTEXT, MAX_DERIVE_INFO = 128, 1024, 8192, 1024


def _key(name: str) -> str:
    # Checked here, like custodyctl does, so a typo is a usage error rather than a daemon's refusal.
    if not KEY_NAME.fullmatch(name):
        raise UsageError(f"'{name}' is not a key name (^[a-z0-9][a-z0-9._-]{{0,62}}$)")
    return name


def _ciphertext(key: str, data: bytes) -> str:
    """The base64 text of a version 1 blob (docs/formats.md) made with this key, or a usage error."""
    text = data.decode("ascii", "replace").strip()
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if not raw:
        raise UsageError("the ciphertext is not base64 (standard alphabet, with padding)")
    if len(raw) < 5 or raw[:3] != b"CST":
        raise UsageError("not a custody ciphertext: not a custody ciphertext")
    if raw[3] != 1:
        raise UsageError("not a custody ciphertext: unsupported ciphertext version")
    name_len = raw[4]
    if len(raw) < 5 + name_len + 4 + 12 + 16:
        raise UsageError("not a custody ciphertext: ciphertext is truncated")
    name = raw[5:5 + name_len].decode("ascii", "replace")
    if not KEY_NAME.fullmatch(name):
        raise UsageError("not a custody ciphertext: ciphertext names an invalid key")
    if int.from_bytes(raw[5 + name_len:9 + name_len], "big") == 0:
        raise UsageError("not a custody ciphertext: ciphertext names key version 0")
    if name != key:
        raise UsageError(f"the ciphertext was made with key '{name}', not '{key}'")
    return text


def _read_input(args: argparse.Namespace) -> bytes:
    if args.text is not None:
        return args.text.encode()
    if args.input in (None, "-"):
        return sys.stdin.buffer.read()
    try:
        with open(args.input, "rb") as f:
            return f.read()
    except OSError as e:
        raise UsageError(f"cannot read {args.input}: {e.strerror}") from e


def _write_output(path: Optional[str], data: bytes, newline: bool) -> int:
    if path and path != "-":
        try:
            with open(path, "wb") as f:
                f.write(data)
        except OSError as e:
            raise UsageError(f"cannot write {path}: {e.strerror}") from e
        return OK
    sys.stdout.flush()
    sys.stdout.buffer.write(data + (b"\n" if newline else b""))
    sys.stdout.buffer.flush()
    return OK


def _print_json(client: Client) -> int:
    raw = client.last_response
    if raw is not None:
        _write_output(None, raw.body, True)
    return OK


def cmd_wrap(c: Client, a: argparse.Namespace) -> int:
    key, data, ctx = _key(a.key), _read_input(a), _context(a.context)
    if not 1 <= len(data) <= MAX_WRAP_PLAINTEXT:
        raise UsageError(f"the plaintext is {len(data)} bytes; wrap takes 1..{MAX_WRAP_PLAINTEXT} "
                         "(for more, wrap a data key: datakey, or envelope-encrypt it: encrypt)")
    r = c.wrap(key, data, ctx)
    return _print_json(c) if a.json else _write_output(a.out, r.ciphertext_b64.encode(), True)


def cmd_unwrap(c: Client, a: argparse.Namespace) -> int:
    key = _key(a.key)
    data, ctx = _read_input(a), _context(a.context)
    r = c.unwrap(key, _ciphertext(key, data), ctx)
    if a.json:
        return _print_json(c)
    if a.base64:
        return _write_output(a.out, base64.b64encode(r.plaintext), True)
    return _write_output(a.out, r.plaintext, False)


def cmd_rewrap(c: Client, a: argparse.Namespace) -> int:
    key = _key(a.key)
    data, ctx = _read_input(a), _context(a.context)
    r = c.rewrap(key, _ciphertext(key, data), ctx)
    return _print_json(c) if a.json else _write_output(a.out, r.ciphertext_b64.encode(), True)


def cmd_datakey(c: Client, a: argparse.Namespace) -> int:
    if not 1 <= a.length <= 64:
        raise UsageError("--length is 1..64")
    r = c.datakey(_key(a.key), a.length, _context(a.context), include_plaintext=not a.no_plaintext)
    if a.json:
        return _print_json(c)
    if r.plaintext is not None:
        _out(f"plaintext: {base64.b64encode(r.plaintext).decode()}\n")
    _out(f"ciphertext: {base64.b64encode(r.ciphertext).decode()}\nkey_version: {r.key_version}\n")
    return OK


def cmd_derive(c: Client, a: argparse.Namespace) -> int:
    _key(a.key)
    if not 1 <= a.length <= 1024:
        raise UsageError("--length is 1..1024")
    info = b""
    if a.info is not None:
        info = a.info.encode()
    elif a.info_file is not None:
        try:
            with open(a.info_file, "rb") as f:
                info = f.read()
        except OSError as e:
            raise UsageError(f"cannot read {a.info_file}: {e.strerror}") from e
    if a.info_base64:
        try:
            info = base64.b64decode(info.strip(), validate=True)
        except (binascii.Error, ValueError) as e:
            raise UsageError("--info-base64 was given but the info is not base64") from e
    if len(info) > MAX_DERIVE_INFO:
        raise UsageError(f"the info is {len(info)} bytes; derive takes at most {MAX_DERIVE_INFO}")
    r = c.derive(_key(a.key), info, a.length, a.version)
    if a.json:
        return _print_json(c)
    return _write_output(None, (r.key.hex() if a.hex else base64.b64encode(r.key).decode()).encode(), True)


def cmd_keys(c: Client, a: argparse.Namespace) -> int:
    if a.keys_command == "list":
        keys = c.keys()
        if a.json:
            return _print_json(c)
        for k in keys:
            _out(f"{k['name']}\t{k['algorithm']}\t{k['state']}\tv{k['current_version']}\n")
        return OK
    k = c.key(_key(a.key))
    if a.json:
        return _print_json(c)
    _out(f"name:            {k['name']}\nalgorithm:       {k['algorithm']}\nstate:           {k['state']}\n"
         f"current_version: {k['current_version']}\nmin_decrypt:     {k.get('min_decrypt_version')}\nversions:\n")
    for v in k.get("versions", []):
        _out(f"  v{v['version']}  {v['state']}  {v['origin']}  {v['created_at']}  kcv {v.get('kcv') or '-'}\n")
    _out(f"policy: {json.dumps(k.get('policy'), separators=(',', ':'))}\n")
    return OK


def cmd_health(c: Client, a: argparse.Namespace) -> int:
    h = c.health()
    if a.json:
        _print_json(c)
    else:
        token, audit = h.get("token", {}), h.get("audit", {})
        _out(f"status: {h.get('status')}\ntoken:  {token.get('label')}"
             f"{' (available)' if token.get('available') else ' (UNAVAILABLE)'}\n"
             f"audit:  {audit.get('path')}{' (writable' if audit.get('writable') else ' (NOT WRITABLE'}"
             f", seq {audit.get('sequence')})\n")
    return OK if h.get("status") in ("ok", "degraded") else UNAVAILABLE


def _save(path: Optional[str], data: bytes) -> None:
    if path:
        _write_output(path, data, False)


def cmd_attest(c: Client, a: argparse.Namespace) -> int:
    if a.attest_command == "key":
        r = c.attest(b"", keys=[], verify=False)
        if a.json:
            _out(json.dumps({"key_id": r.key_id, "public_key": r.public_key}, separators=(",", ":")) + "\n")
        else:
            _out(f"key_id {r.key_id}\n{r.public_key}")
        return OK
    nonce = None
    if a.nonce is not None:
        try:
            nonce = base64.b64decode(a.nonce, validate=True)
        except (binascii.Error, ValueError) as e:
            raise UsageError("--nonce takes base64") from e
    pinned = None
    if a.public_key:
        try:
            with open(a.public_key, "rb") as f:
                pinned = f.read()
        except OSError as e:
            raise UsageError(f"cannot read {a.public_key}: {e.strerror}") from e
    try:
        r = c.attest(nonce, a.key or None, pinned)
    except VerificationUnavailable as e:
        # Say so rather than print a report that looks checked.
        print(f"{PROG}: {e.message}", file=sys.stderr)
        print("signature: NOT CHECKED", file=sys.stderr)
        return VERIFY_FAILED
    _save(a.out_report, r.report_bytes)
    _save(a.out_signature, r.signature)
    _save(a.out_public_key, r.public_key.encode())
    if a.json:
        return _write_output(None, r.report_bytes, True)
    doc = r.report
    d, t = doc.get("daemon", {}), doc.get("token", {})
    _out(f"attestation by custodyd {d.get('version')} (instance {d.get('instance_id')}), issued {doc.get('issued_at')}\n"
         f"token: {t.get('label')} ({t.get('manufacturer')} {t.get('model')}, serial {t.get('serial')})\n"
         f"audit: seq {doc.get('audit', {}).get('sequence')}, head {doc.get('audit', {}).get('head')}\n"
         f"signed by key_id {r.key_id}"
         f"{' (checked against the pinned public key)' if r.pinned else ' (its own key: pin it with --public-key)'}\n")
    for k in doc.get("keys", []):
        _out(f"key {k['name']} ({k['algorithm']}, {k['state']})\n")
        for v in k.get("versions", []):
            attrs = v.get("object", {}).get("attributes", {})
            hardware = v.get("origin") == "generated" and all(attrs.get(n) is True for n in ("local", "never_extractable", "always_sensitive"))
            what = ("generated in the token, never extractable" if hardware else
                    "imported (was outside this token before)" if v.get("origin") == "imported" else
                    "attributes do not prove in-token generation")
            _out(f"  v{v['version']} {v['state']}: {what}{' — EXTRACTABLE' if attrs.get('extractable') is True else ''}\n")
    _out("signature: valid; nonce: echoed\n")
    return OK


def cmd_encrypt(c: Client, a: argparse.Namespace) -> int:
    from .envelope import Envelope
    env = Envelope(c, a.key, chunk_size=a.chunk_size)
    src = sys.stdin.buffer if a.input in (None, "-") else open(a.input, "rb")
    try:
        if a.out and a.out != "-":
            from .envelope import _write_atomically
            _write_atomically(a.out, lambda dst: env.encrypt_stream(src, dst, _context(a.context)))
        else:
            env.encrypt_stream(src, sys.stdout.buffer, _context(a.context))
    finally:
        if src is not sys.stdin.buffer:
            src.close()
    return OK


def cmd_decrypt(c: Client, a: argparse.Namespace) -> int:
    from .envelope import Envelope
    env = Envelope(c, a.key)
    expected = _context(a.context) if a.context else None
    if a.input in (None, "-") or not a.out or a.out == "-":
        raise UsageError("decrypt needs --in FILE and --out FILE (the plaintext appears only once it authenticates)")
    env.decrypt_file(a.input, a.out, expected)
    return OK


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"python3 -m {PROG}", description="talk to custodyd's service socket",
                                epilog="Exit status: 0 success, 1 refused by the daemon (4xx), 2 usage or input error, "
                                       "3 daemon unreachable or unavailable (5xx), 4 verification failed.")
    p.add_argument("--socket", default=os.environ.get("CUSTODY_SERVICE_SOCKET") or "/run/custody/service.sock",
                   help="service socket (env CUSTODY_SERVICE_SOCKET)")
    p.add_argument("--json", action="store_true", help="print the daemon's JSON response as it is")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds per socket operation")
    sub = p.add_subparsers(dest="command", required=True)

    def data_cmd(name: str, help_: str, what: str, out_help: str):
        s = sub.add_parser(name, help=help_)
        s.add_argument("key")
        src = s.add_mutually_exclusive_group()
        src.add_argument("--text", help=f"{what} given on the command line")
        src.add_argument("--in", dest="input", help=f"{what} read from a file; - for stdin (the default)")
        s.add_argument("--context", action="append", metavar="K=V", help="encryption context pair (repeatable)")
        s.add_argument("--out", help=out_help)
        return s

    data_cmd("wrap", "encrypt a plaintext under a key; prints the base64 ciphertext", "plaintext",
             "write the ciphertext to a file").set_defaults(run=cmd_wrap)
    s = data_cmd("unwrap", "decrypt a base64 ciphertext; prints the raw plaintext", "base64 ciphertext",
                 "write the plaintext to a file")
    s.add_argument("--base64", action="store_true", help="print the plaintext base64-encoded")
    s.set_defaults(run=cmd_unwrap)
    data_cmd("rewrap", "re-encrypt a ciphertext under the key's current version", "base64 ciphertext",
             "write the new ciphertext to a file").set_defaults(run=cmd_rewrap)

    s = sub.add_parser("datakey", help="make a data key: plaintext and ciphertext (base64)")
    s.add_argument("key")
    s.add_argument("--length", type=int, default=32, help="bytes, 1..64")
    s.add_argument("--context", action="append", metavar="K=V")
    s.add_argument("--no-plaintext", action="store_true", help="return only the ciphertext")
    s.set_defaults(run=cmd_datakey)

    s = sub.add_parser("derive", help="derive key bytes with HKDF-Expand from an hmac-sha256 key")
    s.add_argument("key")
    info = s.add_mutually_exclusive_group()
    info.add_argument("--info", help="info string (default empty)")
    info.add_argument("--info-file", help="read info from a file")
    s.add_argument("--info-base64", action="store_true", help="the info given is base64")
    s.add_argument("--length", type=int, default=32, help="bytes, 1..1024")
    s.add_argument("--version", type=int, help="key version (default: current)")
    s.add_argument("--hex", action="store_true", help="print hex instead of base64")
    s.set_defaults(run=cmd_derive)

    s = sub.add_parser("keys", help="list and show keys")
    ks = s.add_subparsers(dest="keys_command", required=True)
    ks.add_parser("list", help="keys you may use")
    show = ks.add_parser("show", help="a key's metadata and versions")
    show.add_argument("key")
    s.set_defaults(run=cmd_keys)

    sub.add_parser("health", help="the daemon's health; exit 0 when ok or degraded").set_defaults(run=cmd_health)

    s = sub.add_parser("attest", help="fetch a signed attestation report, check it and summarize it")
    s.add_argument("--nonce", help="base64 nonce to bind (default: 32 random bytes)")
    s.add_argument("--key", action="append", help="only this key (repeatable)")
    s.add_argument("--public-key", help="verify with this pinned public key (PEM)")
    s.add_argument("--out-report", help="save the exact signed report bytes")
    s.add_argument("--out-signature", help="save the DER signature")
    s.add_argument("--out-public-key", help="save the daemon's public key (PEM)")
    at = s.add_subparsers(dest="attest_command")
    at.add_parser("key", help="print the attestation public key and its key_id")
    s.set_defaults(run=cmd_attest)

    s = sub.add_parser("encrypt", help="envelope-encrypt a file (AES-256-GCM under a data key from custody)")
    s.add_argument("key")
    s.add_argument("--in", dest="input", help="plaintext file; - for stdin (the default)")
    s.add_argument("--out", help="envelope file (default stdout)")
    s.add_argument("--context", action="append", metavar="K=V")
    s.add_argument("--chunk-size", type=int, default=64 * 1024, help="plaintext bytes per chunk")
    s.set_defaults(run=cmd_encrypt)

    s = sub.add_parser("decrypt", help="decrypt an envelope file; the output appears only if it all authenticates")
    s.add_argument("--in", dest="input", required=True, help="envelope file")
    s.add_argument("--out", required=True, help="plaintext file")
    s.add_argument("--key", help="refuse an envelope under any other key")
    s.add_argument("--context", action="append", metavar="K=V", help="the context expected (repeatable)")
    s.set_defaults(run=cmd_decrypt)
    return p


def main(argv: Optional[List[str]] = None) -> int:
    args = _parser().parse_args(argv)  # exits 2 on a usage error, like custodyctl
    client = Client(args.socket, timeout=args.timeout)
    try:
        return args.run(client, args)
    except UsageError as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return USAGE
    except (EnvelopeError, VerificationFailed) as e:
        print(f"{PROG}: {e.message}", file=sys.stderr)
        return VERIFY_FAILED
    except CryptographyMissing as e:
        print(f"{PROG}: {e.message}", file=sys.stderr)
        return USAGE
    except ConnectionFailed as e:
        print(f"{PROG}: {e.message}", file=sys.stderr)
        return UNAVAILABLE
    except CustodyError as e:
        raw = client.last_response
        if args.json and raw is not None and raw.status == e.status:
            _write_output(None, raw.body, True)
        else:
            rid = f" (request {e.request_id})" if e.request_id else ""
            print(f"{PROG}: {e.code}: {e.message}{rid}", file=sys.stderr)
        if isinstance(e, ProtocolError) or (e.status or 0) >= 500:
            return UNAVAILABLE
        return REFUSED if e.status else USAGE  # no status: refused here, before asking the daemon
    finally:
        client.close()


if __name__ == "__main__":
    sys.exit(main())
