"""custody: a Python client for custodyd, the key custody daemon.

    from custody import Client, Envelope, DataKeyCache
    client = Client()                       # $CUSTODY_SERVICE_SOCKET or /run/custody/service.sock
    blob = client.wrap("payments", b"secret", {"tenant": "acme"}).ciphertext
    client.unwrap("payments", blob, {"tenant": "acme"}).plaintext

The client needs only the standard library; Envelope and attestation checks need `cryptography`.
"""

from .cache import DataKeyCache
from .client import Attestation, Client, DataKey, Derived, Unwrapped, Wrapped
from .envelope import Envelope, Header, read_header
from .errors import (ConnectionFailed, CryptographyMissing, CustodyError, EnvelopeError, FailedPrecondition,
                     InternalError, InvalidArgument, InvalidCiphertext, MethodNotAllowed, NotFound,
                     PayloadTooLarge, PermissionDenied, ProtocolError, ResourceExhausted, TokenError, Unavailable,
                     VerificationFailed, VerificationUnavailable)

__version__ = "0.1.0"

__all__ = [
    "Attestation", "Client", "ConnectionFailed", "CryptographyMissing", "CustodyError", "DataKey", "DataKeyCache",
    "Derived", "Envelope", "EnvelopeError", "FailedPrecondition", "Header", "InternalError", "InvalidArgument",
    "InvalidCiphertext", "MethodNotAllowed", "NotFound", "PayloadTooLarge", "PermissionDenied", "ProtocolError",
    "ResourceExhausted", "TokenError", "Unavailable", "Unwrapped", "VerificationFailed", "VerificationUnavailable",
    "Wrapped", "read_header",
]
