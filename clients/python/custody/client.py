"""custody's service-socket client: wrap, unwrap, datakey, rewrap, derive (single and batch),
keys, health and attestation, over HTTP/1.1 on a Unix socket. Standard library only;
attestation signatures are checked when the `cryptography` package is importable."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import random
import re
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Union

from ._transport import ConnectionPool, RawResponse
from .errors import (ConnectionFailed, CustodyError, InvalidArgument, ProtocolError, VerificationFailed,
                     VerificationUnavailable, error_for)

DEFAULT_SERVICE_SOCKET = "/run/custody/service.sock"

Context = Mapping[str, str]
# A ciphertext is the raw §4 blob (bytes) or its base64 text (what custodyctl prints).
Ciphertext = Union[bytes, bytearray, str]

# Statuses after which the same request may succeed: rate limit, transient unavailability,
# and a token that failed an operation it should have done.
_RETRYABLE_STATUS = frozenset({429, 502, 503})


@dataclass(frozen=True)
class Wrapped:
    ciphertext: bytes  # the §4 blob
    key_version: int

    @property
    def ciphertext_b64(self) -> str:
        return base64.b64encode(self.ciphertext).decode()


@dataclass(frozen=True)
class Unwrapped:
    plaintext: bytes
    key_version: int


@dataclass(frozen=True)
class DataKey:
    plaintext: Optional[bytes]  # None when include_plaintext=False
    ciphertext: bytes
    key_version: int


@dataclass(frozen=True)
class Derived:
    key: bytes
    key_version: int


@dataclass(frozen=True)
class Attestation:
    """An attestation envelope (docs/formats.md). `signature_verified` is True only when the
    signature was checked with `cryptography`; None means it was NOT checked (verify=False)."""
    report: Dict[str, Any]
    report_bytes: bytes  # the exact signed bytes
    signature: bytes     # DER ECDSA P-256 SHA-256
    public_key: str      # PEM of the key that signed (the pinned one when given)
    key_id: str          # hex SHA-256 of the signing key's SPKI DER
    nonce: bytes
    signature_verified: Optional[bool]
    pinned: bool


# A batch result item: the result, or the typed error of that item (never raised).
BatchResult = List[Union[Wrapped, Unwrapped, DataKey, Derived, CustodyError]]


def _b64(data: Union[bytes, bytearray]) -> str:
    return base64.b64encode(bytes(data)).decode()


def _unb64(text: Any, field: str) -> bytes:
    if not isinstance(text, str):
        raise ProtocolError(f"the daemon's answer lacks the base64 field '{field}'")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as e:
        raise ProtocolError(f"the daemon's '{field}' is not base64: {e}") from e


def _ciphertext_field(ciphertext: Ciphertext) -> str:
    if isinstance(ciphertext, str):
        return ciphertext.strip()
    if isinstance(ciphertext, (bytes, bytearray, memoryview)):
        return _b64(bytes(ciphertext))
    raise TypeError("ciphertext is the blob (bytes) or its base64 text (str)")


def _context_field(context: Optional[Context]) -> Dict[str, str]:
    if context is None:
        return {}
    if not isinstance(context, Mapping) or not all(isinstance(k, str) and isinstance(v, str) for k, v in context.items()):
        raise TypeError("context is a mapping of str to str")
    return dict(context)


def _bytes_field(data: Any, name: str) -> str:
    if isinstance(data, str):
        data = data.encode()
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"{name} is bytes")
    return _b64(bytes(data))


_KEY_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")


def _key_path(key: str, operation: str = "") -> str:
    # The key-name rule of docs/api.md, checked before the name goes into a URL path.
    if not isinstance(key, str) or not _KEY_NAME.fullmatch(key):
        raise InvalidArgument(f"'{key}' is not a key name (^[a-z0-9][a-z0-9._-]{{0,62}}$)")
    return f"/v1/keys/{key}" + (f"/{operation}" if operation else "")


def _int(body: Mapping[str, Any], field: str) -> int:
    value = body.get(field)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ProtocolError(f"the daemon's answer lacks the integer field '{field}'")
    return value


def _wrapped(body: Mapping[str, Any]) -> Wrapped:
    return Wrapped(_unb64(body.get("ciphertext"), "ciphertext"), _int(body, "key_version"))


def _unwrapped(body: Mapping[str, Any]) -> Unwrapped:
    return Unwrapped(_unb64(body.get("plaintext"), "plaintext"), _int(body, "key_version"))


def _datakey(body: Mapping[str, Any]) -> DataKey:
    plain = _unb64(body["plaintext"], "plaintext") if "plaintext" in body else None
    return DataKey(plain, _unb64(body.get("ciphertext"), "ciphertext"), _int(body, "key_version"))


def _derived(body: Mapping[str, Any]) -> Derived:
    return Derived(_unb64(body.get("key"), "key"), _int(body, "key_version"))


class Client:
    """A client of custodyd's service socket. Thread-safe; keeps a few connections alive.

    socket_path: default $CUSTODY_SERVICE_SOCKET, else /run/custody/service.sock.
    timeout: seconds for connecting and for each read/write on the socket.
    max_retries, retry_budget: a retried call is tried at most 1 + max_retries times and sleeps
      at most retry_budget seconds in all; it waits what Retry-After says (429/503), else a
      short exponential backoff with jitter; a Retry-After beyond the remaining budget is not
      cut short: the error is raised at once instead.
    retry_writes: see below; False by default.

    What is retried. unwrap, derive, keys, key, health and attest change nothing in the daemon
    and are retried on 429, 502, 503 and on a connection that fails. wrap, datakey and rewrap
    are NOT retried by default: custodyd counts every encryption per key version (usage limits
    trigger automatic rotation and bound how many random GCM IVs a version sees), and an
    answer can be lost after the daemon has already encrypted and counted, so a retry could
    count (and encrypt) twice behind the caller's back. Pass retry_writes=True to retry them
    like the others when double counting is acceptable to you.
    """

    def __init__(self, socket_path: Optional[str] = None, *, timeout: float = 10.0, max_retries: int = 3,
                 retry_budget: float = 5.0, retry_writes: bool = False,
                 sleep: Callable[[float], None] = time.sleep):
        self.socket_path = socket_path or os.environ.get("CUSTODY_SERVICE_SOCKET") or DEFAULT_SERVICE_SOCKET
        self.timeout = timeout
        self.max_retries = max_retries
        self.retry_budget = retry_budget
        self.retry_writes = retry_writes
        self._sleep = sleep
        self._pool = ConnectionPool(self.socket_path, timeout)
        # The last call's request id, answer as received, and requests sent (1 + retries): for
        # logs, tests and the CLI; not meaningful when threads share the client.
        self.last_request_id: Optional[str] = None
        self.last_response: Optional[RawResponse] = None
        self.attempts = 0

    def close(self) -> None:
        self._pool.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ---- low level ---------------------------------------------------------------------------

    def call(self, method: str, path: str, body: Optional[Mapping[str, Any]] = None, *, retry: bool,
             request_id: Optional[str] = None) -> Dict[str, Any]:
        """One API call; the parsed JSON answer of a 2xx, else the typed exception.
        retry: whether this call may be retried (see the class docstring)."""
        raw = self.call_raw(method, path, body, retry=retry, request_id=request_id)
        if not 200 <= raw.status < 300:
            raise self._error(raw)
        return self._json(raw)

    def call_raw(self, method: str, path: str, body: Optional[Mapping[str, Any]] = None, *, retry: bool,
                 request_id: Optional[str] = None, retry_on: frozenset = _RETRYABLE_STATUS) -> RawResponse:
        """Like call, but returns the last answer whatever its status (errors that no retry
        fixed included); raises only ConnectionFailed. retry_on: the statuses worth retrying."""
        data = json.dumps(body, separators=(",", ":")).encode() if body is not None else None
        headers = {"Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        if request_id:
            headers["X-Request-Id"] = request_id
        slept = 0.0
        self.attempts = 0
        self.last_response = None
        while True:
            self.attempts += 1
            failure: Optional[ConnectionFailed] = None
            raw: Optional[RawResponse] = None
            try:
                raw = self._pool.send(method, path, data, headers)
                self.last_request_id, self.last_response = raw.request_id, raw
            except ConnectionFailed as e:
                failure = e
            if raw is not None and raw.status not in retry_on:
                return raw
            if not retry or self.attempts > self.max_retries:
                if failure:
                    raise failure
                return raw  # type: ignore[return-value]
            hinted = raw.retry_after if raw is not None else None
            wait = hinted if hinted is not None else min(1.0, 0.05 * 2 ** (self.attempts - 1)) * (0.5 + random.random() / 2)
            if slept + wait > self.retry_budget:
                if failure:
                    raise failure
                return raw  # type: ignore[return-value]
            self._sleep(wait)
            slept += wait

    @staticmethod
    def _json(raw: RawResponse) -> Dict[str, Any]:
        try:
            value = json.loads(raw.body)
        except ValueError as e:
            raise ProtocolError(f"HTTP {raw.status} with a body that is not JSON", status=raw.status,
                                request_id=raw.request_id) from e
        if not isinstance(value, dict):
            raise ProtocolError(f"HTTP {raw.status} with a JSON body that is not an object", status=raw.status,
                                request_id=raw.request_id)
        return value

    @staticmethod
    def _error(raw: RawResponse) -> CustodyError:
        code, message = None, raw.body[:200].decode("utf-8", "replace") or f"HTTP {raw.status}"
        try:
            error = json.loads(raw.body).get("error")
            if isinstance(error, dict):
                code, message = error.get("code"), error.get("message", message)
        except (ValueError, AttributeError):
            pass
        return error_for(raw.status, code, message, request_id=raw.request_id, retry_after=raw.retry_after)

    def _data_plane(self, key: str, operation: str, body: Mapping[str, Any], write: bool) -> Dict[str, Any]:
        return self.call("POST", _key_path(key, operation), body, retry=not write or self.retry_writes)

    def _batch(self, key: str, operation: str, items: List[Dict[str, Any]], write: bool,
               parse: Callable[[Mapping[str, Any]], Any]) -> BatchResult:
        if not 1 <= len(items) <= 256:
            raise InvalidArgument("a batch has 1..256 items")
        body = self._data_plane(key, operation, {"batch": items}, write)
        results = body.get("batch")
        if not isinstance(results, list) or len(results) != len(items):
            raise ProtocolError("the batch answer does not have one result per item")
        out: BatchResult = []
        for r in results:
            if isinstance(r, dict) and isinstance(r.get("error"), dict):
                e = r["error"]
                out.append(error_for(None, e.get("code"), e.get("message", ""), request_id=self.last_request_id))
            else:
                out.append(parse(r))
        return out

    # ---- data plane ----------------------------------------------------------------------------

    def wrap(self, key: str, plaintext: bytes, context: Optional[Context] = None) -> Wrapped:
        """Encrypts 1..8192 bytes under the key's current version. Not retried unless retry_writes."""
        body = {"plaintext": _bytes_field(plaintext, "plaintext"), "context": _context_field(context)}
        return _wrapped(self._data_plane(key, "wrap", body, write=True))

    def unwrap(self, key: str, ciphertext: Ciphertext, context: Optional[Context] = None) -> Unwrapped:
        """Decrypts a blob; the context must be the one given to wrap."""
        body = {"ciphertext": _ciphertext_field(ciphertext), "context": _context_field(context)}
        return _unwrapped(self._data_plane(key, "unwrap", body, write=False))

    def datakey(self, key: str, length: int = 32, context: Optional[Context] = None,
                include_plaintext: bool = True) -> DataKey:
        """A fresh data key (1..64 bytes) and its blob. Not retried unless retry_writes."""
        body = {"length": length, "context": _context_field(context), "include_plaintext": include_plaintext}
        return _datakey(self._data_plane(key, "datakey", body, write=True))

    def rewrap(self, key: str, ciphertext: Ciphertext, context: Optional[Context] = None) -> Wrapped:
        """Re-encrypts a blob under the key's current version. Not retried unless retry_writes."""
        body = {"ciphertext": _ciphertext_field(ciphertext), "context": _context_field(context)}
        return _wrapped(self._data_plane(key, "rewrap", body, write=True))

    def derive(self, key: str, info: bytes = b"", length: int = 32, version: Optional[int] = None) -> Derived:
        """HKDF-Expand(SHA-256, key version, info, length) of an hmac-sha256 key."""
        body: Dict[str, Any] = {"info": _bytes_field(info, "info"), "length": length}
        if version is not None:
            body["version"] = version
        return _derived(self._data_plane(key, "derive", body, write=False))

    # Batch forms: 1..256 items in one request, each authorized and audited on its own. The
    # result list is in item order; a refused item is its typed error (not raised).

    def wrap_batch(self, key: str, items: Iterable[Union[bytes, tuple]]) -> BatchResult:
        """items: plaintext bytes, or (plaintext, context) pairs."""
        body = []
        for item in items:
            plaintext, context = item if isinstance(item, tuple) else (item, None)
            body.append({"plaintext": _bytes_field(plaintext, "plaintext"), "context": _context_field(context)})
        return self._batch(key, "wrap", body, True, _wrapped)

    def unwrap_batch(self, key: str, items: Iterable[Union[Ciphertext, tuple]]) -> BatchResult:
        """items: ciphertexts, or (ciphertext, context) pairs."""
        body = []
        for item in items:
            ciphertext, context = item if isinstance(item, tuple) else (item, None)
            body.append({"ciphertext": _ciphertext_field(ciphertext), "context": _context_field(context)})
        return self._batch(key, "unwrap", body, False, _unwrapped)

    def rewrap_batch(self, key: str, items: Iterable[Union[Ciphertext, tuple]]) -> BatchResult:
        """items: ciphertexts, or (ciphertext, context) pairs."""
        body = []
        for item in items:
            ciphertext, context = item if isinstance(item, tuple) else (item, None)
            body.append({"ciphertext": _ciphertext_field(ciphertext), "context": _context_field(context)})
        return self._batch(key, "rewrap", body, True, _wrapped)

    def datakey_batch(self, key: str, contexts: Sequence[Optional[Context]], length: int = 32,
                      include_plaintext: bool = True) -> BatchResult:
        """One data key per context given (None for an empty context)."""
        body = [{"length": length, "context": _context_field(c), "include_plaintext": include_plaintext} for c in contexts]
        return self._batch(key, "datakey", body, True, _datakey)

    def derive_batch(self, key: str, infos: Sequence[bytes], length: int = 32,
                     version: Optional[int] = None) -> BatchResult:
        """One derived key per info given."""
        body = []
        for info in infos:
            item: Dict[str, Any] = {"info": _bytes_field(info, "info"), "length": length}
            if version is not None:
                item["version"] = version
            body.append(item)
        return self._batch(key, "derive", body, False, _derived)

    # ---- metadata, health, attestation ------------------------------------------------------------

    def keys(self) -> List[Dict[str, Any]]:
        """Metadata of the keys the caller may use."""
        keys = self.call("GET", "/v1/keys", retry=True).get("keys")
        if not isinstance(keys, list):
            raise ProtocolError("the answer lacks 'keys'")
        return keys

    def key(self, name: str) -> Dict[str, Any]:
        """One key's metadata: algorithm, state, current_version, versions, policy."""
        return self.call("GET", _key_path(name), retry=True)

    def health(self) -> Dict[str, Any]:
        """The health document: `status` is ok, degraded or unavailable. An unavailable daemon
        answers 503 with this document: it is returned (that is the answer, not a transient
        error); 429 and connection failures are retried."""
        raw = self.call_raw("GET", "/v1/health", retry=True, retry_on=frozenset({429}))
        if raw.status == 200:
            return self._json(raw)
        if raw.status == 503:
            try:
                doc = self._json(raw)
            except ProtocolError:
                doc = {}
            if "status" in doc:
                return doc
        raise self._error(raw)

    def attest(self, nonce: Optional[bytes] = None, keys: Optional[Sequence[str]] = None,
               public_key: Optional[Union[str, bytes]] = None, verify: bool = True) -> Attestation:
        """Fetches a signed attestation report (docs/formats.md) bound to a nonce (default: 32 random
        bytes) and checks it: the nonce is echoed (always), and with verify=True the ECDSA
        signature over the exact report bytes and the key id, against `public_key` (a pinned PEM)
        when given, else the key the daemon sent (which proves integrity, not identity: pin it).

        Signatures need the `cryptography` package; without it verify=True raises
        VerificationUnavailable rather than claim a check it did not make, and verify=False
        returns the report with signature_verified=None.
        Raises VerificationFailed when a check fails."""
        if nonce is None:
            nonce = os.urandom(32)
        body: Dict[str, Any] = {"nonce": _b64(nonce)}
        if keys is not None:
            body["keys"] = list(keys)
        if verify:
            _require_cryptography("verify an attestation signature")
        answer = self.call("POST", "/v1/attestation", body, retry=True)
        report_bytes = _unb64(answer.get("report"), "report")
        signature = _unb64(answer.get("signature"), "signature")
        pem = answer.get("public_key")
        if not isinstance(pem, str) or not isinstance(answer.get("key_id"), str):
            raise ProtocolError("the attestation lacks public_key or key_id")
        try:
            report = json.loads(report_bytes)
        except ValueError as e:
            raise VerificationFailed("the attestation report is not JSON") from e
        if not isinstance(report, dict) or report.get("nonce") != _b64(nonce):
            raise VerificationFailed("the attestation report does not echo the nonce sent: it is not fresh")
        if report.get("format") != "custody.attestation.v1":
            raise VerificationFailed(f"unknown attestation format {report.get('format')!r}")
        pinned = public_key is not None
        if pinned:
            pem = public_key.decode() if isinstance(public_key, bytes) else public_key
        verified: Optional[bool] = None
        key_id = answer["key_id"]
        if verify:
            key_id = _verify_signature(pem, report_bytes, signature)
            if not pinned and key_id != answer["key_id"]:
                raise VerificationFailed("the attestation's key_id is not the SHA-256 of its public key")
            verified = True
        return Attestation(report, report_bytes, signature, pem, key_id, bytes(nonce), verified, pinned)


def _require_cryptography(what: str) -> None:
    try:
        import cryptography  # noqa: F401
    except ImportError as e:
        raise VerificationUnavailable(
            f"cannot {what}: the 'cryptography' package is not installed (Debian: python3-cryptography); "
            "pass verify=False to get the report without claiming it was verified") from e


def _verify_signature(pem: str, data: bytes, signature: bytes) -> str:
    """Checks an ECDSA P-256 SHA-256 signature; returns the key id (hex SHA-256 of the SPKI DER)."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    try:
        key = serialization.load_pem_public_key(pem.encode())
    except ValueError as e:
        raise VerificationFailed(f"the public key is not a PEM public key: {e}") from e
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise VerificationFailed("the attestation key is not an EC P-256 key")
    try:
        key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature as e:
        raise VerificationFailed("the attestation signature does not verify") from e
    spki = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(spki).hexdigest()
