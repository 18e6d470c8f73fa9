"""custody.Client against a real custodyd on a fresh SoftHSMv2 token: every operation, its batch
form, the typed exceptions as the daemon really answers them, and which calls are retried."""

import base64
import os
import time
import unittest

from custody_harness import Daemon, shared_daemon

import custody
from custody import Client
from custody._transport import UnixHTTPConnection

CTX = {"tenant": "acme", "purpose": "test"}


class DataPlane(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.daemon = shared_daemon()
        cls.client = Client(cls.daemon.service_socket, timeout=5)

    @classmethod
    def tearDownClass(cls):
        cls.client.close()

    def test_wrap_unwrap_round_trip_in_the_contract_blob_format(self):
        w = self.client.wrap("app", b"secret bytes \x00\xff", CTX)
        self.assertEqual(w.ciphertext[:4], b"CST\x01")
        self.assertEqual(w.ciphertext[4], 3)
        self.assertEqual(w.ciphertext[5:8], b"app")
        self.assertEqual(int.from_bytes(w.ciphertext[8:12], "big"), w.key_version)
        u = self.client.unwrap("app", w.ciphertext, CTX)
        self.assertEqual(u.plaintext, b"secret bytes \x00\xff")
        self.assertEqual(u.key_version, w.key_version)
        # The base64 text custodyctl prints is accepted as well as the raw blob.
        self.assertEqual(self.client.unwrap("app", w.ciphertext_b64, CTX).plaintext, b"secret bytes \x00\xff")

    def test_unwrap_with_another_context_is_invalid_ciphertext(self):
        w = self.client.wrap("app", b"x", CTX)
        with self.assertRaises(custody.InvalidCiphertext) as caught:
            self.client.unwrap("app", w.ciphertext, {"tenant": "evil"})
        self.assertEqual((caught.exception.status, caught.exception.code), (400, "invalid_ciphertext"))
        self.assertTrue(caught.exception.request_id)

    def test_datakey_plaintext_is_what_its_ciphertext_unwraps_to(self):
        dk = self.client.datakey("app", 32, CTX)
        self.assertEqual(len(dk.plaintext), 32)
        self.assertEqual(self.client.unwrap("app", dk.ciphertext, CTX).plaintext, dk.plaintext)
        only = self.client.datakey("app", 16, include_plaintext=False)
        self.assertIsNone(only.plaintext)
        self.assertEqual(len(self.client.unwrap("app", only.ciphertext).plaintext), 16)

    def test_rewrap_after_rotation_moves_the_blob_to_the_new_version(self):
        self.daemon.create_key("rotating", "aes-256-gcm")
        old = self.client.wrap("rotating", b"kept", CTX)
        self.daemon.admin_operation("rotate-key", {"name": "rotating"})
        new = self.client.rewrap("rotating", old.ciphertext, CTX)
        self.assertEqual((old.key_version, new.key_version), (1, 2))
        self.assertEqual(self.client.unwrap("rotating", new.ciphertext, CTX).plaintext, b"kept")
        self.assertEqual(self.client.key("rotating")["current_version"], 2)

    def test_derive_is_deterministic_per_info_and_length(self):
        a = self.client.derive("derive", b"tenant-1", 48)
        self.assertEqual(len(a.key), 48)
        self.assertEqual(self.client.derive("derive", b"tenant-1", 48, version=1).key, a.key)
        self.assertNotEqual(self.client.derive("derive", b"tenant-2", 48).key, a.key)
        # HKDF-Expand: a shorter output is a prefix of a longer one (RFC 5869 §2.3).
        self.assertEqual(self.client.derive("derive", b"tenant-1", 16).key, a.key[:16])

    def test_batches_answer_in_order_with_per_item_typed_errors(self):
        wrapped = self.client.wrap_batch("app", [b"one", (b"two", CTX), b"three"])
        self.assertTrue(all(isinstance(w, custody.Wrapped) for w in wrapped))
        unwrapped = self.client.unwrap_batch("app", [wrapped[0].ciphertext, (wrapped[1].ciphertext, CTX),
                                                     (wrapped[2].ciphertext, CTX), b"not a blob"])
        self.assertEqual([u.plaintext for u in unwrapped[:2]], [b"one", b"two"])
        self.assertIsInstance(unwrapped[2], custody.InvalidCiphertext)  # wrong context for item 3
        self.assertIsInstance(unwrapped[3], custody.InvalidCiphertext)
        self.assertEqual(unwrapped[3].status, 400)
        rewrapped = self.client.rewrap_batch("app", [(wrapped[1].ciphertext, CTX)])
        self.assertEqual(self.client.unwrap("app", rewrapped[0].ciphertext, CTX).plaintext, b"two")
        keys = self.client.datakey_batch("app", [None, CTX], length=24)
        self.assertEqual([len(k.plaintext) for k in keys], [24, 24])
        self.assertEqual(self.client.unwrap("app", keys[1].ciphertext, CTX).plaintext, keys[1].plaintext)
        derived = self.client.derive_batch("derive", [b"a", b"b"], 20)
        self.assertEqual([d.key for d in derived],
                         [self.client.derive("derive", b"a", 20).key, self.client.derive("derive", b"b", 20).key])
        refused = self.client.derive_batch("derive", [b"a"], 20, version=77)
        self.assertIsInstance(refused[0], custody.NotFound)
        with self.assertRaises(custody.InvalidArgument):
            self.client.wrap_batch("app", [b"x"] * 257)

    def test_keys_and_key_show_the_callers_keys(self):
        names = {k["name"] for k in self.client.keys()}
        self.assertTrue({"app", "derive", "unwrap-only"} <= names)
        self.assertNotIn("foreign", names)  # the policy names another uid
        app = self.client.key("app")
        self.assertEqual((app["algorithm"], app["state"]), ("aes-256-gcm", "enabled"))
        self.assertEqual(app["versions"][0]["version"], 1)

    def test_health_is_ok(self):
        h = self.client.health()
        self.assertEqual(h["status"], "ok")
        self.assertTrue(h["token"]["available"])


class TypedErrors(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.daemon = shared_daemon()
        cls.client = Client(cls.daemon.service_socket, timeout=5)

    @classmethod
    def tearDownClass(cls):
        cls.client.close()

    def assertRaisesCode(self, cls, status, code, call):
        with self.assertRaises(cls) as caught:
            call()
        e = caught.exception
        self.assertIsInstance(e, custody.CustodyError)
        self.assertEqual((e.status, e.code), (status, code), str(e))
        self.assertTrue(e.message)
        return e

    def test_policy_refusal_is_permission_denied(self):
        self.assertRaisesCode(custody.PermissionDenied, 403, "permission_denied",
                              lambda: self.client.wrap("foreign", b"x"))
        # Allowed to unwrap only: wrapping is refused by policy.
        self.assertRaisesCode(custody.PermissionDenied, 403, "permission_denied",
                              lambda: self.client.wrap("unwrap-only", b"x"))

    def test_unknown_key_is_refused_like_a_forbidden_one(self):
        # The service socket does not tell which keys exist: an unknown key answers 403 too.
        self.assertRaisesCode(custody.PermissionDenied, 403, "permission_denied",
                              lambda: self.client.unwrap("no-such-key", b"CST\x01"))

    def test_unknown_version_and_path_are_not_found(self):
        self.assertRaisesCode(custody.NotFound, 404, "not_found", lambda: self.client.derive("derive", b"", 32, version=9))
        self.assertRaisesCode(custody.NotFound, 404, "not_found",
                              lambda: self.client.call("GET", "/v1/no-such-path", retry=False))

    def test_bad_blob_and_bad_argument(self):
        self.assertRaisesCode(custody.InvalidCiphertext, 400, "invalid_ciphertext",
                              lambda: self.client.unwrap("app", b"garbage that is no blob"))
        self.assertRaisesCode(custody.InvalidArgument, 400, "invalid_argument", lambda: self.client.wrap("app", b""))
        self.assertRaisesCode(custody.InvalidArgument, 400, "invalid_argument",
                              lambda: self.client.datakey("app", length=65))

    def test_method_not_allowed(self):
        self.assertRaisesCode(custody.MethodNotAllowed, 405, "method_not_allowed",
                              lambda: self.client.call("DELETE", "/v1/keys/app/wrap", retry=False))

    def test_body_over_the_limit_is_payload_too_large(self):
        self.assertRaisesCode(custody.PayloadTooLarge, 413, "payload_too_large",
                              lambda: self.client.call("POST", "/v1/keys/app/wrap",
                                                       {"plaintext": "A" * (70 * 1024)}, retry=False))

    def test_disabled_key_is_failed_precondition(self):
        self.daemon.create_key("to-disable", "aes-256-gcm")
        blob = self.client.wrap("to-disable", b"x").ciphertext
        self.daemon.admin_operation("disable-key", {"name": "to-disable"})
        self.assertRaisesCode(custody.FailedPrecondition, 409, "failed_precondition",
                              lambda: self.client.unwrap("to-disable", blob))

    def test_unreachable_socket_is_connection_failed(self):
        client = Client(os.path.join(self.daemon.dir, "nothing-here.sock"), max_retries=0)
        self.addCleanup(client.close)
        with self.assertRaises(custody.ConnectionFailed) as caught:
            client.health()
        self.assertIsNone(caught.exception.status)
        self.assertFalse(caught.exception.sent)


class Attestation(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.daemon = shared_daemon()
        cls.client = Client(cls.daemon.service_socket, timeout=5)

    @classmethod
    def tearDownClass(cls):
        cls.client.close()

    def test_report_is_verified_and_bound_to_the_nonce(self):
        nonce = os.urandom(16)
        a = self.client.attest(nonce, keys=["app"])
        self.assertIs(a.signature_verified, True)
        self.assertEqual(a.report["nonce"], base64.b64encode(nonce).decode())
        self.assertEqual([k["name"] for k in a.report["keys"]], ["app"])
        self.assertFalse(a.pinned)
        pinned = self.client.attest(public_key=a.public_key)
        self.assertTrue(pinned.pinned)
        self.assertEqual(pinned.key_id, a.key_id)

    def test_a_report_checked_against_another_pinned_key_fails(self):
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        stranger = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        with self.assertRaises(custody.VerificationFailed):
            self.client.attest(public_key=stranger)

    def test_without_cryptography_verification_is_refused_not_claimed(self):
        import builtins
        real_import = builtins.__import__

        def no_cryptography(name, *args, **kwargs):
            if name == "cryptography" or name.startswith("cryptography."):
                raise ImportError("hidden for this test")
            return real_import(name, *args, **kwargs)

        builtins.__import__ = no_cryptography
        try:
            with self.assertRaises(custody.VerificationUnavailable):
                self.client.attest()
            unverified = self.client.attest(verify=False)
        finally:
            builtins.__import__ = real_import
        self.assertIsNone(unverified.signature_verified)


class Retries(unittest.TestCase):
    """A daemon that takes one service connection at a time answers a second with 429 and
    Retry-After: 1. Reads retry honouring it; writes do not unless asked to."""

    @classmethod
    def setUpClass(cls):
        cls.daemon = Daemon(extra_limits="  max_connections: 1\n")
        cls.daemon.create_key("k", "aes-256-gcm")
        with Client(cls.daemon.service_socket) as c:
            cls.blob = c.wrap("k", b"payload").ciphertext

    @classmethod
    def tearDownClass(cls):
        cls.daemon.stop()

    def setUp(self):
        # Holds the one slot: a kept-alive connection that got a 200. (A connection made while the
        # daemon still counts the previous test's holder would itself be refused: try again.)
        deadline = time.monotonic() + 10
        while True:
            self.holder = UnixHTTPConnection(self.daemon.service_socket, 5)
            self.holder.request("GET", "/v1/health")
            response = self.holder.getresponse()
            response.read()
            if response.status == 200:
                break
            self.holder.close()
            self.assertLess(time.monotonic(), deadline, "the daemon never freed its one connection slot")
        self.waits = []

    def tearDown(self):
        self.holder.close()

    def client(self, **options):
        client = Client(self.daemon.service_socket, sleep=self.release_then_wait, max_retries=5, **options)
        self.addCleanup(client.close)
        return client

    def release_then_wait(self, seconds):
        """The client's sleep: records the wait, frees the one connection slot, and waits a
        tenth of it so that the daemon sees the slot free."""
        self.waits.append(seconds)
        self.holder.close()
        time.sleep(seconds / 10)

    def test_unwrap_is_retried_after_retry_after(self):
        client = self.client(retry_budget=10)
        self.assertEqual(client.unwrap("k", self.blob).plaintext, b"payload")
        self.assertGreaterEqual(client.attempts, 2)
        self.assertTrue(self.waits)
        self.assertTrue(all(w == 1.0 for w in self.waits), self.waits)  # Retry-After honoured

    def test_wrap_is_not_retried_by_default(self):
        client = self.client(retry_budget=10)
        with self.assertRaises(custody.ResourceExhausted) as caught:
            client.wrap("k", b"counted once")
        self.assertEqual((caught.exception.status, caught.exception.retry_after), (429, 1.0))
        self.assertEqual((client.attempts, self.waits), (1, []))
        with self.assertRaises(custody.ResourceExhausted):
            client.datakey("k")
        with self.assertRaises(custody.ResourceExhausted):
            client.rewrap("k", self.blob)
        self.assertEqual(self.waits, [])

    def test_wrap_is_retried_when_retry_writes_is_asked_for(self):
        client = self.client(retry_budget=10, retry_writes=True)
        self.assertEqual(client.wrap("k", b"x").key_version, 1)
        self.assertGreaterEqual(client.attempts, 2)

    def test_a_retry_after_beyond_the_budget_is_not_cut_short(self):
        client = self.client(retry_budget=0.5)
        with self.assertRaises(custody.ResourceExhausted):
            client.unwrap("k", self.blob)
        self.assertEqual((client.attempts, self.waits), (1, []))


class KeptAliveConnections(unittest.TestCase):
    """A connection the daemon closed while idle is noticed before reuse: a wrap (never retried)
    still goes through on a fresh connection instead of failing."""

    @classmethod
    def setUpClass(cls):
        cls.daemon = Daemon(extra_limits="  idle_timeout: 200ms\n")
        cls.daemon.create_key("k", "aes-256-gcm")

    @classmethod
    def tearDownClass(cls):
        cls.daemon.stop()

    def test_a_write_after_the_daemon_closed_the_idle_connection_succeeds_first_time(self):
        client = Client(self.daemon.service_socket)
        self.addCleanup(client.close)
        client.wrap("k", b"first")
        (idle,) = client._pool._idle
        # Wait (bounded) until the daemon has closed the idle connection: EOF is readable.
        import select
        poller = select.poll()
        poller.register(idle.sock, select.POLLIN)
        self.assertTrue(poller.poll(10_000), "the daemon did not close the idle connection")
        self.assertEqual(client.wrap("k", b"second").key_version, 1)
        self.assertEqual(client.attempts, 1)


class UnreachableDaemon(unittest.TestCase):
    def test_reads_retry_a_failed_connection_and_writes_do_not(self):
        waits = []
        client = Client("/nonexistent/custody.sock", max_retries=2, sleep=waits.append)
        self.addCleanup(client.close)
        with self.assertRaises(custody.ConnectionFailed):
            client.unwrap("k", b"CST\x01")
        self.assertEqual((client.attempts, len(waits)), (3, 2))
        self.assertTrue(all(0 < w <= 1.0 for w in waits), waits)  # backoff, no Retry-After to honour
        with self.assertRaises(custody.ConnectionFailed):
            client.wrap("k", b"x")
        self.assertEqual((client.attempts, len(waits)), (1, 2))


if __name__ == "__main__":
    unittest.main()
