"""Typed exceptions: one class per error code of custody's contract (HTTP status + error code).

Every exception the client raises is a CustodyError, so `except custody.CustodyError` catches
them all; catch a subclass to handle one condition (e.g. `PermissionDenied`).
"""

from __future__ import annotations

from typing import Optional


class CustodyError(Exception):
    """An error answered by custodyd, or a failure to reach it.

    status: the HTTP status (None when no answer came back), code: the contract's error code,
    message: the daemon's message, request_id: its X-Request-Id (the same id is in the audit
    record), retry_after: seconds from the Retry-After header (429/503) or None.
    """

    code = "unknown"

    def __init__(self, message: str, *, status: Optional[int] = None, code: Optional[str] = None,
                 request_id: Optional[str] = None, retry_after: Optional[float] = None):
        super().__init__(message)
        self.status = status
        if code is not None:
            self.code = code
        self.message = message
        self.request_id = request_id
        self.retry_after = retry_after

    def __str__(self) -> str:
        where = f" (HTTP {self.status}, request {self.request_id})" if self.status else ""
        return f"{self.code}: {self.message}{where}"


class InvalidArgument(CustodyError):
    """400: bad JSON, field, base64, size or name."""
    code = "invalid_argument"


class InvalidCiphertext(CustodyError):
    """400: bad blob, wrong key name in the blob, tag or context mismatch."""
    code = "invalid_ciphertext"


class PermissionDenied(CustodyError):
    """403: the caller's uid/gid is not allowed this operation on this key (or no policy names it)."""
    code = "permission_denied"


class NotFound(CustodyError):
    """404: unknown key, version, request, job or path."""
    code = "not_found"


class MethodNotAllowed(CustodyError):
    """405."""
    code = "method_not_allowed"


class FailedPrecondition(CustodyError):
    """409: key disabled or pending destruction, version retired, job or request expired."""
    code = "failed_precondition"


class PayloadTooLarge(CustodyError):
    """413: the body is over the daemon's limit (default 64 KiB)."""
    code = "payload_too_large"


class ResourceExhausted(CustodyError):
    """429: connection, per-uid or in-flight limit; retry_after says when to try again."""
    code = "resource_exhausted"


class InternalError(CustodyError):
    """500: a bug in the daemon."""
    code = "internal"


class TokenError(CustodyError):
    """502: the token failed an operation it should have done (the message names the CK_RV)."""
    code = "token_error"


class Unavailable(CustodyError):
    """503: token unreachable, pool saturated, state store or audit failing, shutting down."""
    code = "unavailable"


class ConnectionFailed(CustodyError):
    """No answer: the socket cannot be reached, the daemon closed the connection, or a timeout."""
    code = "connection_failed"


class ProtocolError(CustodyError):
    """The daemon answered something that is not the contract's JSON (e.g. a proxy in the way)."""
    code = "protocol_error"


class VerificationFailed(CustodyError):
    """An attestation report's signature, key id or nonce does not check out."""
    code = "verification_failed"


class VerificationUnavailable(CustodyError):
    """Verification was asked for but the `cryptography` package is not installed."""
    code = "verification_unavailable"


class EnvelopeError(CustodyError):
    """An envelope is malformed, truncated, reordered or tampered with, or its header does not
    match what the caller expected (key, context)."""
    code = "envelope_error"


class CryptographyMissing(CustodyError):
    """The envelope helper (and attestation verification) need the `cryptography` package."""
    code = "cryptography_missing"


_BY_CODE = {cls.code: cls for cls in (
    InvalidArgument, InvalidCiphertext, PermissionDenied, NotFound, MethodNotAllowed, FailedPrecondition,
    PayloadTooLarge, ResourceExhausted, InternalError, TokenError, Unavailable)}

# When a body carries no (known) code, the status alone decides; 400 is the more general code.
_BY_STATUS = {400: InvalidArgument, 403: PermissionDenied, 404: NotFound, 405: MethodNotAllowed,
              409: FailedPrecondition, 413: PayloadTooLarge, 429: ResourceExhausted, 500: InternalError,
              502: TokenError, 503: Unavailable}


_STATUS_OF = {cls: status for status, cls in _BY_STATUS.items()}
_STATUS_OF[InvalidCiphertext] = 400


def error_for(status: Optional[int], code: Optional[str], message: str, *, request_id: Optional[str] = None,
              retry_after: Optional[float] = None) -> CustodyError:
    """The typed exception for an error answer. A batch item's error has a code but no status of
    its own: it gets the status the contract gives that code."""
    cls = _BY_CODE.get(code or "") or _BY_STATUS.get(status or 0, CustodyError)
    if status is None:
        status = _STATUS_OF.get(cls)
    return cls(message, status=status, code=code or cls.code, request_id=request_id, retry_after=retry_after)
