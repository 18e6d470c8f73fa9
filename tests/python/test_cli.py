"""python3 -m custody: custodyctl's commands, output and exit status (0 ok, 1 refused, 2 usage,
3 unreachable/5xx, 4 verification failed), against a real custodyd; where custodyctl is built,
the two are checked against each other."""

import base64
import json
import os
import subprocess
import sys
import tempfile
import unittest

from custody_harness import SOURCE_DIR, shared_daemon

from custody import Client

# A well-formed §4 blob for key 'app' v1 whose tag cannot check out: only the daemon can tell.
FORGED = base64.b64encode(b"CST\x01\x03app\x00\x00\x00\x01" + bytes(12) + b"forged" + bytes(16)).decode()
CUSTODYCTL = os.environ.get("CUSTODYCTL") or os.path.join(SOURCE_DIR, "build", "cli", "custodyctl")


class Cli(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.daemon = shared_daemon()
        cls.client = Client(cls.daemon.service_socket)
        cls.env = dict(os.environ, CUSTODY_SERVICE_SOCKET=cls.daemon.service_socket,
                       PYTHONPATH=os.path.join(SOURCE_DIR, "clients", "python"))
        cls.tmp = tempfile.TemporaryDirectory()

    @classmethod
    def tearDownClass(cls):
        cls.client.close()
        cls.tmp.cleanup()

    def custody(self, *args, stdin=b"", env=None):
        done = subprocess.run([sys.executable, "-m", "custody", *args], input=stdin, env=env or self.env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
        return done.returncode, done.stdout, done.stderr.decode()

    def custodyctl(self, *args, stdin=b""):
        if not os.access(CUSTODYCTL, os.X_OK):
            self.skipTest(f"custodyctl not built at {CUSTODYCTL}")
        done = subprocess.run([CUSTODYCTL, *args], input=stdin, env=self.env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, timeout=30)
        return done.returncode, done.stdout, done.stderr.decode()

    def path(self, name):
        return os.path.join(self.tmp.name, name)

    def test_wrap_from_stdin_then_unwrap_prints_the_raw_plaintext(self):
        rc, out, err = self.custody("wrap", "app", "--context", "app=billing", stdin=b"db password\n")
        self.assertEqual(rc, 0, err)
        self.assertTrue(out.endswith(b"\n"))
        blob = base64.b64decode(out.strip(), validate=True)
        self.assertEqual(blob[:4], b"CST\x01")
        rc, plain, err = self.custody("unwrap", "app", "--text", out.decode(), "--context", "app=billing")
        self.assertEqual((rc, plain), (0, b"db password\n"), err)
        rc, b64, _ = self.custody("unwrap", "app", "--text", out.decode(), "--context", "app=billing", "--base64")
        self.assertEqual(b64, base64.b64encode(b"db password\n") + b"\n")

    def test_files_in_and_out_and_rewrap(self):
        src, ct, ct2, back = self.path("s"), self.path("ct"), self.path("ct2"), self.path("back")
        with open(src, "wb") as f:
            f.write(b"\x00binary\xff")
        self.assertEqual(self.custody("wrap", "app", "--in", src, "--out", ct)[0], 0)
        self.assertEqual(self.custody("rewrap", "app", "--in", ct, "--out", ct2)[0], 0)
        self.assertEqual(self.custody("unwrap", "app", "--in", ct2, "--out", back)[0], 0)
        with open(back, "rb") as f:
            self.assertEqual(f.read(), b"\x00binary\xff")

    def test_datakey_and_derive_output(self):
        rc, out, _ = self.custody("datakey", "app", "--length", "16", "--context", "t=1")
        lines = out.decode().splitlines()
        self.assertEqual((rc, [l.split(": ")[0] for l in lines]), (0, ["plaintext", "ciphertext", "key_version"]))
        plain = base64.b64decode(lines[0].split(": ")[1])
        self.assertEqual(self.client.unwrap("app", lines[1].split(": ")[1], {"t": "1"}).plaintext, plain)
        rc, out, _ = self.custody("datakey", "app", "--no-plaintext")
        self.assertEqual([l.split(": ")[0] for l in out.decode().splitlines()], ["ciphertext", "key_version"])
        rc, out, _ = self.custody("derive", "derive", "--info", "tenant-42", "--length", "24", "--hex")
        self.assertEqual((rc, out.decode()), (0, self.client.derive("derive", b"tenant-42", 24).key.hex() + "\n"))

    def test_keys_health_and_json(self):
        rc, out, _ = self.custody("keys", "list")
        self.assertEqual(rc, 0)
        self.assertIn("app\taes-256-gcm\tenabled\tv1", out.decode().splitlines())
        rc, out, _ = self.custody("keys", "show", "app")
        self.assertTrue(out.decode().startswith("name:            app\nalgorithm:       aes-256-gcm\n"))
        rc, out, _ = self.custody("health")
        self.assertEqual((rc, out.decode().splitlines()[0]), (0, "status: ok"))
        rc, out, _ = self.custody("--json", "wrap", "app", "--text", "x")
        self.assertEqual(rc, 0)
        self.assertEqual(json.loads(out)["key_version"], 1)

    def test_attest_verifies_and_a_stranger_key_fails_with_4(self):
        rc, out, err = self.custody("attest", "--key", "app", "--out-public-key", self.path("pub.pem"))
        self.assertEqual(rc, 0, err)
        self.assertEqual(out.decode().splitlines()[-1], "signature: valid; nonce: echoed")
        rc, out, _ = self.custody("attest", "--public-key", self.path("pub.pem"))
        self.assertEqual(rc, 0)
        self.assertIn("(checked against the pinned public key)", out.decode())
        rc, out, _ = self.custody("attest", "key")
        self.assertTrue(out.decode().startswith("key_id ") and "BEGIN PUBLIC KEY" in out.decode())
        subprocess.run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
                        "-out", self.path("stranger.key")], check=True, capture_output=True)
        subprocess.run(["openssl", "pkey", "-in", self.path("stranger.key"), "-pubout", "-out",
                        self.path("stranger.pem")], check=True, capture_output=True)
        rc, _, err = self.custody("attest", "--public-key", self.path("stranger.pem"))
        self.assertEqual(rc, 4, err)

    def test_exit_status_mirrors_custodyctl(self):
        rc, out, err = self.custody("wrap", "foreign", "--text", "x")
        self.assertEqual((rc, out), (1, b""))
        self.assertRegex(err, r"^custody: permission_denied: .* \(request [0-9a-f]+\)\n$")
        self.assertEqual(self.custody("unwrap", "app", "--text", FORGED)[0], 1)  # the daemon's tag check
        rc, out, _ = self.custody("--json", "unwrap", "app", "--text", FORGED)
        self.assertEqual((rc, json.loads(out)["error"]["code"]), (1, "invalid_ciphertext"))
        self.assertEqual(self.custody("--socket", self.path("none.sock"), "health")[0], 3)
        self.assertEqual(self.custody("wrap", "app", "--text", "x", "--context", "novalue")[0], 2)
        self.assertEqual(self.custody("datakey", "app", "--length", "65")[0], 2)
        # Checked before asking the daemon, as custodyctl does: not a blob, another key's blob,
        # a name that is no key name, a context given twice, an empty plaintext.
        rc, _, err = self.custody("unwrap", "app", "--text", "Q1NUAQ==")
        self.assertEqual((rc, err), (2, "custody: not a custody ciphertext: not a custody ciphertext\n"))
        rc, _, err = self.custody("unwrap", "other", "--text", FORGED)
        self.assertEqual((rc, err), (2, "custody: the ciphertext was made with key 'app', not 'other'\n"))
        self.assertEqual(self.custody("wrap", "Bad/Name", "--text", "x")[0], 2)
        self.assertEqual(self.custody("wrap", "app", "--text", "x", "--context", "a=1", "--context", "a=2")[0], 2)
        self.assertEqual(self.custody("wrap", "app", "--text", "")[0], 2)
        self.assertEqual(self.custody("no-such-command")[0], 2)

    def test_envelope_files_and_tampering_exit_4(self):
        src, sealed, back = self.path("big"), self.path("big.cste"), self.path("big.out")
        data = os.urandom(200_000)
        with open(src, "wb") as f:
            f.write(data)
        self.assertEqual(self.custody("encrypt", "app", "--in", src, "--out", sealed, "--context", "t=1")[0], 0)
        self.assertEqual(self.custody("decrypt", "--in", sealed, "--out", back, "--context", "t=1")[0], 0)
        with open(back, "rb") as f:
            self.assertEqual(f.read(), data)
        with open(sealed, "r+b") as f:
            f.truncate(os.path.getsize(sealed) - 70_000)
        os.unlink(back)
        rc, _, err = self.custody("decrypt", "--in", sealed, "--out", back)
        self.assertEqual(rc, 4, err)
        self.assertFalse(os.path.exists(back))

    def test_custodyctl_reads_what_the_python_cli_writes_and_prints_the_same(self):
        rc, out, _ = self.custody("wrap", "app", "--text", "shared secret", "--context", "k=v")
        rc2, plain, err = self.custodyctl("unwrap", "app", "--text", out.decode(), "--context", "k=v")
        self.assertEqual((rc2, plain), (0, b"shared secret"), err)
        for args in (["keys", "list"], ["keys", "show", "app"], ["derive", "derive", "--info", "x", "--hex"],
                     ["unwrap", "app", "--text", out.decode(), "--context", "k=v", "--base64"]):
            self.assertEqual(self.custody(*args)[:2], self.custodyctl(*args)[:2], args)
        for args in (["wrap", "foreign", "--text", "x"], ["unwrap", "app", "--text", "Q1NUAQ=="],
                     ["unwrap", "app", "--text", FORGED], ["unwrap", "other", "--text", FORGED],
                     ["wrap", "Bad/Name", "--text", "x"], ["wrap", "app", "--text", ""],
                     ["wrap", "app", "--text", "x", "--context", "a=1", "--context", "a=2"],
                     ["--socket", self.path("none.sock"), "keys", "list"]):
            self.assertEqual(self.custody(*args)[0], self.custodyctl(*args)[0], args)


if __name__ == "__main__":
    unittest.main()
