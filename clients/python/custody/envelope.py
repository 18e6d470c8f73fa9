"""Envelope encryption with custody: data is encrypted locally with AES-256-GCM under a data key
that custody makes and wraps; the wrapped data key, the custody key's name and the encryption
context travel in a small header in front of the data. Only a caller custody lets unwrap with
that key and context can decrypt. Needs the `cryptography` package.

Format version 1 (all integers big-endian; clients/python/README.md shows it as a table):

  header = "CSTE" || 0x01 (version) || 0x01 (suite) || u32 chunk_size || message_id (32 bytes)
           || u8 len(key) || key || u16 len(ctx) || ctx || u16 len(wrapped) || wrapped
  body   = chunk_0 || chunk_1 || ... || chunk_last, each chunk = GCM ciphertext || 16-byte tag

  ctx          the context encoding of docs/formats.md (u16 count, pairs sorted by key bytes,
               each u16 len(key) || key || u16 len(value) || value)
  wrapped      the §4 blob of a 32-byte data key from POST /v1/keys/{key}/datakey with ctx
  message_key  HKDF-SHA256(IKM = data key, salt = message_id, info = "custody.envelope.v1", 32)
  nonce_i      4 zero bytes || u64 i
  aad_i        SHA-256(header) || u64 i || u8 final (1 for the last chunk, else 0)

Every chunk holds chunk_size plaintext bytes except the last, which holds 1..chunk_size (0 only
when the whole plaintext is empty). Because the index and the final flag are authenticated,
dropping, reordering, duplicating or appending chunks, or cutting the data at a chunk boundary,
fails the tag check. The per-message key (random message_id) makes counter nonces safe when a
cached data key protects many messages.

Streaming decryption writes each chunk once its tag checks, so a stream cut short is reported
only at its end: discard the output when decrypt raises (decrypt_file does so itself, writing to
a temporary file it renames only on success).
"""

from __future__ import annotations

import hashlib
import io
import os
import struct
import tempfile
from dataclasses import dataclass
from typing import BinaryIO, Dict, Mapping, Optional, Tuple

from .cache import DataKeyCache
from .client import Client, Context
from .errors import CryptographyMissing, EnvelopeError

MAGIC = b"CSTE"
VERSION = 1
SUITE_AES256GCM_HKDF_SHA256 = 1
TAG_BYTES = 16
DATA_KEY_BYTES = 32
DEFAULT_CHUNK_SIZE = 64 * 1024
MAX_CHUNK_SIZE = 16 * 1024 * 1024  # what one decrypt call may hold in memory
HKDF_INFO = b"custody.envelope.v1"
_FIXED = struct.Struct(">4sBBI32s")  # magic, version, suite, chunk_size, message_id


def encode_context(context: Optional[Mapping[str, str]]) -> bytes:
    """The context encoding of docs/formats.md, the bytes custody binds into a blob's AAD."""
    pairs = sorted((k.encode(), v.encode()) for k, v in (context or {}).items())
    out = bytearray(struct.pack(">H", len(pairs)))
    for k, v in pairs:
        out += struct.pack(">H", len(k)) + k + struct.pack(">H", len(v)) + v
    return bytes(out)


def decode_context(data: bytes) -> Dict[str, str]:
    try:
        (count,) = struct.unpack_from(">H", data, 0)
        pos, out = 2, {}
        for _ in range(count):
            (n,) = struct.unpack_from(">H", data, pos)
            k = data[pos + 2:pos + 2 + n]
            pos += 2 + n
            (m,) = struct.unpack_from(">H", data, pos)
            v = data[pos + 2:pos + 2 + m]
            pos += 2 + m
            if len(k) != n or len(v) != m:
                raise EnvelopeError("the envelope's context is cut short")
            out[k.decode()] = v.decode()
    except (struct.error, UnicodeDecodeError) as e:
        raise EnvelopeError(f"the envelope's context is malformed: {e}") from e
    if pos != len(data):
        raise EnvelopeError("the envelope's context has trailing bytes")
    return out


@dataclass(frozen=True)
class Header:
    chunk_size: int
    message_id: bytes
    key: str
    context: Dict[str, str]
    wrapped_key: bytes
    raw: bytes  # the exact header bytes (hashed into every chunk's AAD)


def build_header(key: str, context: Optional[Mapping[str, str]], wrapped_key: bytes, chunk_size: int,
                 message_id: bytes) -> Header:
    name = key.encode("ascii")
    ctx = encode_context(context)
    if not 1 <= len(name) <= 255 or len(ctx) > 0xFFFF or len(wrapped_key) > 0xFFFF:
        raise EnvelopeError("key name, context or wrapped key too long for the header")
    raw = (_FIXED.pack(MAGIC, VERSION, SUITE_AES256GCM_HKDF_SHA256, chunk_size, message_id)
           + struct.pack(">B", len(name)) + name + struct.pack(">H", len(ctx)) + ctx
           + struct.pack(">H", len(wrapped_key)) + wrapped_key)
    return Header(chunk_size, message_id, key, dict(context or {}), bytes(wrapped_key), raw)


def _read_exact(src: BinaryIO, n: int, what: str) -> bytes:
    data = bytearray()
    while len(data) < n:
        part = src.read(n - len(data))
        if not part:
            raise EnvelopeError(f"the envelope is cut short in its {what}")
        data += part
    return bytes(data)


def read_header(src: BinaryIO) -> Header:
    """Reads and checks an envelope header from a binary stream (left just past it)."""
    fixed = _read_exact(src, _FIXED.size, "header")
    magic, version, suite, chunk_size, message_id = _FIXED.unpack(fixed)
    if magic != MAGIC:
        raise EnvelopeError("not a custody envelope (bad magic)")
    if version != VERSION or suite != SUITE_AES256GCM_HKDF_SHA256:
        raise EnvelopeError(f"unsupported envelope version {version} / suite {suite}")
    if not 1 <= chunk_size <= MAX_CHUNK_SIZE:
        raise EnvelopeError(f"envelope chunk size {chunk_size} out of range 1..{MAX_CHUNK_SIZE}")
    raw = bytearray(fixed)
    (n,) = struct.unpack(">B", _read_exact(src, 1, "header"))
    name = _read_exact(src, n, "header")
    raw += bytes([n]) + name
    fields = []
    for what in ("context", "wrapped key"):
        length = _read_exact(src, 2, what)
        value = _read_exact(src, struct.unpack(">H", length)[0], what)
        raw += length + value
        fields.append(value)
    try:
        key = name.decode("ascii")
    except UnicodeDecodeError as e:
        raise EnvelopeError("the envelope's key name is not ASCII") from e
    if not key:
        raise EnvelopeError("the envelope names no key")
    return Header(chunk_size, message_id, key, decode_context(fields[0]), fields[1], bytes(raw))


def _crypto():
    try:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
        from cryptography.hazmat.primitives.kdf.hkdf import HKDF
    except ImportError as e:
        raise CryptographyMissing("the envelope helper needs the 'cryptography' package "
                                  "(Debian: apt-get install python3-cryptography; pip: cryptography)") from e
    return hashes, AESGCM, HKDF


class _Chunker:
    """AES-GCM of one message's chunks under its per-message key."""

    def __init__(self, data_key: bytes, header: Header):
        hashes, AESGCM, HKDF = _crypto()
        message_key = HKDF(algorithm=hashes.SHA256(), length=32, salt=header.message_id,
                           info=HKDF_INFO).derive(bytes(data_key))
        self._gcm = AESGCM(message_key)
        self._header_hash = hashlib.sha256(header.raw).digest()

    def _nonce_aad(self, index: int, final: bool) -> Tuple[bytes, bytes]:
        return struct.pack(">IQ", 0, index), self._header_hash + struct.pack(">QB", index, 1 if final else 0)

    def seal(self, index: int, final: bool, plaintext: bytes) -> bytes:
        nonce, aad = self._nonce_aad(index, final)
        return self._gcm.encrypt(nonce, plaintext, aad)

    def open(self, index: int, final: bool, chunk: bytes) -> bytes:
        from cryptography.exceptions import InvalidTag
        nonce, aad = self._nonce_aad(index, final)
        try:
            return self._gcm.decrypt(nonce, chunk, aad)
        except InvalidTag as e:
            where = "final " if final else ""
            raise EnvelopeError(f"{where}chunk {index} does not authenticate: the envelope was altered, "
                                "truncated or reordered, or is not for this key") from e


def _read_up_to(src: BinaryIO, n: int) -> bytes:
    data = bytearray()
    while len(data) < n:
        part = src.read(n - len(data))
        if not part:
            break
        data += part
    return bytes(data)


class Envelope:
    """Encrypts and decrypts bytes, streams and files under data keys from custody.

    key: the custody aes-256-gcm key for encryption; for decryption the header names the key,
      and when `key` is set an envelope under another key is refused.
    cache: an optional DataKeyCache; without one every encryption asks custody for a new data key
      and every decryption asks custody to unwrap.
    """

    def __init__(self, client: Client, key: Optional[str] = None, *, cache: Optional[DataKeyCache] = None,
                 chunk_size: int = DEFAULT_CHUNK_SIZE):
        _crypto()
        if not 1 <= chunk_size <= MAX_CHUNK_SIZE:
            raise ValueError(f"chunk_size is 1..{MAX_CHUNK_SIZE}")
        self.client = client
        self.key = key
        self.cache = cache
        self.chunk_size = chunk_size

    # ---- data keys ----------------------------------------------------------------------------

    def _data_key_for_encrypt(self, context: Optional[Context]) -> Tuple[bytes, bytes]:
        if not self.key:
            raise EnvelopeError("Envelope needs a key to encrypt")
        slot = ("encrypt", self.key, encode_context(context))
        if self.cache is not None:
            hit = self.cache.get(slot)
            if hit is not None:
                return hit
        made = self.client.datakey(self.key, DATA_KEY_BYTES, context)
        if made.plaintext is None or len(made.plaintext) != DATA_KEY_BYTES:
            raise EnvelopeError("custody returned no 32-byte data key")
        if self.cache is not None:
            self.cache.put(slot, made.plaintext, made.ciphertext)
        return made.plaintext, made.ciphertext

    def _data_key_for_decrypt(self, header: Header) -> bytes:
        slot = ("decrypt", header.key, encode_context(header.context), header.wrapped_key)
        if self.cache is not None:
            hit = self.cache.get(slot)
            if hit is not None:
                return hit[0]
        plain = self.client.unwrap(header.key, header.wrapped_key, header.context).plaintext
        if len(plain) != DATA_KEY_BYTES:
            raise EnvelopeError("the wrapped data key is not 32 bytes")
        if self.cache is not None:
            self.cache.put(slot, plain, header.wrapped_key)
        return plain

    # ---- streams ------------------------------------------------------------------------------

    def encrypt_stream(self, src: BinaryIO, dst: BinaryIO, context: Optional[Context] = None) -> int:
        """Encrypts src to dst in chunks (memory bounded by two chunks); returns bytes written."""
        data_key, wrapped = self._data_key_for_encrypt(context)
        header = build_header(self.key or "", context, wrapped, self.chunk_size, os.urandom(32))
        chunker = _Chunker(data_key, header)
        dst.write(header.raw)
        written = len(header.raw)
        current = _read_up_to(src, self.chunk_size)
        index = 0
        while True:
            upcoming = _read_up_to(src, self.chunk_size) if len(current) == self.chunk_size else b""
            final = not upcoming
            sealed = chunker.seal(index, final, current)
            dst.write(sealed)
            written += len(sealed)
            if final:
                return written
            current, index = upcoming, index + 1

    def decrypt_stream(self, src: BinaryIO, dst: BinaryIO, context: Optional[Context] = None) -> Header:
        """Decrypts src to dst; returns the header. context, when given, must equal the one the
        envelope was made with (the caller states what it expects, as with the AWS Encryption SDK)."""
        header = read_header(src)
        if self.key is not None and header.key != self.key:
            raise EnvelopeError(f"the envelope is under key '{header.key}', not '{self.key}'")
        if context is not None and dict(context) != header.context:
            raise EnvelopeError("the envelope's encryption context is not the one expected")
        chunker = _Chunker(self._data_key_for_decrypt(header), header)
        sealed_size = header.chunk_size + TAG_BYTES
        current = _read_up_to(src, sealed_size)
        index = 0
        while True:
            upcoming = _read_up_to(src, sealed_size) if len(current) == sealed_size else b""
            final = not upcoming
            if len(current) < TAG_BYTES or (not final and len(current) != sealed_size):
                raise EnvelopeError(f"the envelope is cut short in chunk {index}")
            dst.write(chunker.open(index, final, current))
            if final:
                return header
            current, index = upcoming, index + 1

    # ---- bytes and files ----------------------------------------------------------------------

    def encrypt(self, plaintext: bytes, context: Optional[Context] = None) -> bytes:
        out = io.BytesIO()
        self.encrypt_stream(io.BytesIO(plaintext), out, context)
        return out.getvalue()

    def decrypt(self, envelope: bytes, context: Optional[Context] = None) -> bytes:
        out = io.BytesIO()
        self.decrypt_stream(io.BytesIO(envelope), out, context)
        return out.getvalue()

    def encrypt_file(self, src_path: str, dst_path: str, context: Optional[Context] = None) -> int:
        with open(src_path, "rb") as src:
            return _write_atomically(dst_path, lambda dst: self.encrypt_stream(src, dst, context))

    def decrypt_file(self, src_path: str, dst_path: str, context: Optional[Context] = None) -> Header:
        """Decrypts to dst_path only when every chunk authenticates: nothing is left at dst_path
        on failure (the plaintext goes to a temporary file next to it, renamed at the end)."""
        with open(src_path, "rb") as src:
            return _write_atomically(dst_path, lambda dst: self.decrypt_stream(src, dst, context))


def _write_atomically(path: str, produce):
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".custody-", dir=directory)
    try:
        with os.fdopen(fd, "wb") as dst:
            result = produce(dst)
            dst.flush()
            os.fsync(dst.fileno())
        os.replace(tmp, path)
        return result
    except BaseException:
        os.unlink(tmp)
        raise
