"""custody.Envelope and DataKeyCache against a real custodyd: round trips, tampering, truncation
and reordering detected, the documented format decoded independently, and the cache's bounds."""

import hashlib
import hmac
import io
import os
import struct
import tempfile
import tracemalloc
import unittest

from custody_harness import shared_daemon

import custody
from custody import Client, DataKeyCache, Envelope
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

CTX = {"tenant": "acme", "file": "report.pdf"}


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def hkdf_sha256(ikm, salt, info, length):
    """RFC 5869 with the standard library only: the test's own, not the package's."""
    prk = hmac.new(salt, ikm, hashlib.sha256).digest()
    out, block, counter = b"", b"", 1
    while len(out) < length:
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
        out += block
        counter += 1
    return out[:length]


def decode_by_the_readme(data, client):
    """Decrypts an envelope following clients/python/README.md byte by byte."""
    magic, version, suite, chunk_size, message_id = struct.unpack_from(">4sBBI32s", data, 0)
    assert (magic, version, suite) == (b"CSTE", 1, 1)
    pos = 42
    name = data[pos + 1:pos + 1 + data[pos]].decode()
    pos += 1 + data[pos]
    (ctx_len,) = struct.unpack_from(">H", data, pos)
    ctx = data[pos + 2:pos + 2 + ctx_len]
    pos += 2 + ctx_len
    (wrapped_len,) = struct.unpack_from(">H", data, pos)
    wrapped = data[pos + 2:pos + 2 + wrapped_len]
    pos += 2 + wrapped_len
    header = data[:pos]
    # The context, §4-encoded: u16 count, then sorted (u16 len, key, u16 len, value) pairs.
    (count,) = struct.unpack_from(">H", ctx, 0)
    context, p = {}, 2
    for _ in range(count):
        (n,) = struct.unpack_from(">H", ctx, p)
        k = ctx[p + 2:p + 2 + n]
        p += 2 + n
        (m,) = struct.unpack_from(">H", ctx, p)
        context[k.decode()] = ctx[p + 2:p + 2 + m].decode()
        p += 2 + m
    data_key = client.unwrap(name, wrapped, context).plaintext
    gcm = AESGCM(hkdf_sha256(data_key, message_id, b"custody.envelope.v1", 32))
    body = data[pos:]
    sealed = chunk_size + 16
    chunks = [body[i:i + sealed] for i in range(0, len(body), sealed)] or [b""]
    plain = b""
    for i, chunk in enumerate(chunks):
        final = i == len(chunks) - 1
        aad = hashlib.sha256(header).digest() + struct.pack(">QB", i, 1 if final else 0)
        plain += gcm.decrypt(struct.pack(">IQ", 0, i), chunk, aad)
    return name, context, plain


class EnvelopeRoundTrips(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.daemon = shared_daemon()
        cls.client = Client(cls.daemon.service_socket)

    @classmethod
    def tearDownClass(cls):
        cls.client.close()

    def test_bytes_round_trip_for_every_chunk_layout(self):
        env = Envelope(self.client, "app", chunk_size=1024)
        for size in (0, 1, 1023, 1024, 1025, 4096, 5000):
            data = os.urandom(size)
            sealed = env.encrypt(data, CTX)
            self.assertEqual(len(sealed) - len(custody.read_header(io.BytesIO(sealed)).raw),
                             size + 16 * max(1, -(-size // 1024)), size)
            self.assertEqual(env.decrypt(sealed, CTX), data, size)
            self.assertEqual(Envelope(self.client).decrypt(sealed), data)  # key and context from the header

    def test_the_documented_format_decrypts_without_the_package(self):
        data = os.urandom(3000)
        sealed = Envelope(self.client, "app", chunk_size=1000).encrypt(data, CTX)
        name, context, plain = decode_by_the_readme(sealed, self.client)
        self.assertEqual((name, context, plain), ("app", CTX, data))
        header = custody.read_header(io.BytesIO(sealed))
        self.assertEqual((header.key, header.context, header.chunk_size), ("app", CTX, 1000))
        # The wrapped data key is a §4 blob under the named key.
        self.assertEqual(header.wrapped_key[:8], b"CST\x01\x03app")

    def test_file_round_trip_in_bounded_memory(self):
        with tempfile.TemporaryDirectory() as d:
            src, sealed, back = (os.path.join(d, n) for n in ("plain", "sealed", "back"))
            block = os.urandom(1 << 20)
            with open(src, "wb") as f:
                for _ in range(8):
                    f.write(block)
            env = Envelope(self.client, "app")
            tracemalloc.start()
            env.encrypt_file(src, sealed, CTX)
            env.decrypt_file(sealed, back, CTX)
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            self.assertLess(peak, 1 << 20, "an 8 MiB file must not be held in memory")
            with open(back, "rb") as f:
                self.assertEqual(hashlib.sha256(f.read()).digest(), hashlib.sha256(block * 8).digest())
            self.assertEqual(os.stat(back).st_mode & 0o777, 0o600)


class EnvelopeTampering(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.daemon = shared_daemon()
        cls.client = Client(cls.daemon.service_socket)
        cls.env = Envelope(cls.client, "app", chunk_size=100)
        cls.data = os.urandom(450)  # chunks of 100, 100, 100, 100, 50
        cls.sealed = cls.env.encrypt(cls.data, CTX)
        cls.header_len = len(custody.read_header(io.BytesIO(cls.sealed)).raw)

    @classmethod
    def tearDownClass(cls):
        cls.client.close()

    def chunks(self):
        body = self.sealed[self.header_len:]
        return self.sealed[:self.header_len], [body[i:i + 116] for i in range(0, len(body), 116)]

    def assertRefused(self, sealed, context=CTX):
        with self.assertRaises(custody.EnvelopeError):
            self.env.decrypt(sealed, context)

    def test_intact_envelope_decrypts(self):
        self.assertEqual(self.env.decrypt(self.sealed, CTX), self.data)

    def test_a_flipped_bit_anywhere_in_the_body_is_detected(self):
        for offset in (self.header_len, self.header_len + 200, len(self.sealed) - 1):
            altered = bytearray(self.sealed)
            altered[offset] ^= 0x01
            self.assertRefused(bytes(altered))

    def test_a_changed_message_id_is_detected(self):
        altered = bytearray(self.sealed)
        altered[20] ^= 0x80
        self.assertRefused(bytes(altered))

    def test_truncation_at_a_chunk_boundary_is_detected(self):
        header, chunks = self.chunks()
        self.assertEqual(len(chunks), 5)
        self.assertRefused(header + b"".join(chunks[:4]))
        self.assertRefused(header + b"".join(chunks[:1]))
        self.assertRefused(header)

    def test_truncation_inside_a_chunk_is_detected(self):
        self.assertRefused(self.sealed[:-1])
        self.assertRefused(self.sealed[:self.header_len + 150])

    def test_reordered_duplicated_or_appended_chunks_are_detected(self):
        header, c = self.chunks()
        self.assertRefused(header + c[1] + c[0] + b"".join(c[2:]))
        self.assertRefused(header + c[0] + c[0] + b"".join(c[2:]))
        self.assertRefused(self.sealed + c[3])

    def test_unexpected_context_or_key_is_refused(self):
        self.assertRefused(self.sealed, {"tenant": "other"})
        with self.assertRaises(custody.EnvelopeError):
            Envelope(self.client, "other").decrypt(self.sealed)

    def test_not_an_envelope(self):
        self.assertRefused(b"CST\x01" + bytes(60))
        self.assertRefused(b"")

    def test_decrypt_file_leaves_nothing_when_the_envelope_is_cut(self):
        with tempfile.TemporaryDirectory() as d:
            cut, out = os.path.join(d, "cut"), os.path.join(d, "out")
            with open(cut, "wb") as f:
                f.write(self.sealed[:self.header_len + 116 * 2])
            with self.assertRaises(custody.EnvelopeError):
                self.env.decrypt_file(cut, out, CTX)
            self.assertEqual(os.listdir(d), ["cut"])


class DataKeyCaching(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.daemon = shared_daemon()
        cls.client = Client(cls.daemon.service_socket)

    @classmethod
    def tearDownClass(cls):
        cls.client.close()

    def datakey_calls(self, key):
        """How many datakey requests custody served for the key, from its audit log."""
        return sum(1 for r in self.daemon.audit_records() if r.get("key") == key and r.get("type") == "datakey"
                   and r.get("result") == "ok")

    def unwrap_calls(self, key):
        return sum(1 for r in self.daemon.audit_records() if r.get("key") == key and r.get("type") == "unwrap"
                   and r.get("result") == "ok")

    def test_uses_bound_limits_how_many_envelopes_share_a_data_key(self):
        self.daemon.create_key("cache-uses", "aes-256-gcm")
        cache = DataKeyCache(max_age=60, max_uses=3, clock=FakeClock())
        env = Envelope(self.client, "cache-uses", cache=cache)
        sealed = [env.encrypt(b"message %d" % i, CTX) for i in range(7)]
        # Uses 1-3 on the first key, 4-6 on the second, 7 on a third.
        self.assertEqual(self.datakey_calls("cache-uses"), 3)
        wrapped = [custody.read_header(io.BytesIO(s)).wrapped_key for s in sealed]
        self.assertEqual(len(set(wrapped)), 3)
        self.assertEqual(len(set(custody.read_header(io.BytesIO(s)).message_id for s in sealed)), 7)
        stats = cache.stats()
        self.assertEqual((stats["hits"], stats["misses"], stats["expired_uses"]), (4, 3, 2))
        self.assertAlmostEqual(stats["hit_rate"], 4 / 7)
        # Envelopes made under a cached key decrypt without the cache.
        self.assertEqual([Envelope(self.client).decrypt(s) for s in sealed], [b"message %d" % i for i in range(7)])

    def test_age_bound_fetches_a_new_data_key(self):
        self.daemon.create_key("cache-age", "aes-256-gcm")
        clock = FakeClock()
        cache = DataKeyCache(max_age=30, max_uses=1000, clock=clock)
        env = Envelope(self.client, "cache-age", cache=cache)
        env.encrypt(b"a", CTX)
        clock.now += 29.9
        env.encrypt(b"b", CTX)
        self.assertEqual(self.datakey_calls("cache-age"), 1)
        clock.now += 0.1
        env.encrypt(b"c", CTX)
        self.assertEqual(self.datakey_calls("cache-age"), 2)
        stats = cache.stats()
        self.assertEqual((stats["hits"], stats["misses"], stats["expired_age"]), (1, 2, 1))

    def test_contexts_get_their_own_data_keys_and_entries_are_bounded(self):
        self.daemon.create_key("cache-entries", "aes-256-gcm")
        cache = DataKeyCache(max_entries=2, clock=FakeClock())
        env = Envelope(self.client, "cache-entries", cache=cache)
        for tenant in ("a", "b", "c", "a"):
            env.encrypt(b"x", {"tenant": tenant})
        # a, b, c are three misses; c pushed a (least recently used) out, so a misses again.
        self.assertEqual(self.datakey_calls("cache-entries"), 4)
        self.assertEqual((cache.stats()["evicted"], cache.stats()["entries"], cache.stats()["hits"]), (2, 2, 0))

    def test_decryption_caches_unwrapped_data_keys(self):
        self.daemon.create_key("cache-decrypt", "aes-256-gcm")
        sealed = Envelope(self.client, "cache-decrypt").encrypt(b"read me often", CTX)
        cache = DataKeyCache(max_uses=10, clock=FakeClock())
        env = Envelope(self.client, "cache-decrypt", cache=cache)
        for _ in range(5):
            self.assertEqual(env.decrypt(sealed, CTX), b"read me often")
        self.assertEqual(self.unwrap_calls("cache-decrypt"), 1)
        self.assertEqual((cache.stats()["hits"], cache.stats()["misses"]), (4, 1))


if __name__ == "__main__":
    unittest.main()
