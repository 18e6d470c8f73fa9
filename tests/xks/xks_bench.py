#!/usr/bin/env python3
"""A benchmark line for the XKS listener: encrypt and decrypt over one kept-alive connection (TLS
when the endpoint is https), p50/p99 against KMS's 250 ms budget and requests per second, beside
wrap/unwrap of the same size over the service socket. The same environment as
xks_conformance.py, plus CUSTODY_SERVICE_SOCKET and CUSTODY_BENCH_KEY (a key the caller may wrap
with; default "demo", as dev-up makes). The client is Python, so the figures include its SigV4
signing and JSON; they bound the daemon's cost from above.

    python3 tests/xks/xks_bench.py [REQUESTS]     (default 2000)
"""
import base64
import http.client
import json
import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import xks_conformance as x  # noqa: E402  (the independent signer and the environment)


class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("custody")
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self.path)


def measure(label, n, one):
    times = []
    start = time.perf_counter()
    for _ in range(n):
        t = time.perf_counter()
        one()
        times.append(time.perf_counter() - t)
    total = time.perf_counter() - start
    times.sort()
    p50, p99 = times[len(times) // 2] * 1000, times[int(len(times) * 0.99) - 1] * 1000
    print(f"{label:<28} n={n} p50={p50:.2f} ms p99={p99:.2f} ms ({'within' if p99 < 250 else 'OVER'} 250 ms) "
          f"{n / total:.0f} req/s")
    return n / total


def main(argv):
    n = int(argv[0]) if argv else 2000
    plaintext = os.urandom(32)
    conn = x.connect()
    status, sealed = x.call("POST", x.api(f"keys/{x.KEY}/encrypt"), {
        "requestMetadata": x.meta(), "plaintext": x.b64(plaintext), "encryptionAlgorithm": "AES_GCM"}, conn=conn)
    assert status == 200, sealed
    enc = {"requestMetadata": x.meta(), "plaintext": x.b64(plaintext), "encryptionAlgorithm": "AES_GCM"}
    dec = x.decrypt_body(sealed)

    def ok(r):
        assert r[0] == 200, r
    xks_rps = measure("xks encrypt", n, lambda: ok(x.call("POST", x.api(f"keys/{x.KEY}/encrypt"), enc, conn=conn)))
    measure("xks decrypt", n, lambda: ok(x.call("POST", x.api(f"keys/{x.KEY}/decrypt"), dec, conn=conn)))
    sock = os.environ.get("CUSTODY_SERVICE_SOCKET")
    if sock:
        key = os.environ.get("CUSTODY_BENCH_KEY", "demo")
        unix = UnixConnection(sock)
        body = json.dumps({"plaintext": base64.b64encode(plaintext).decode()})

        def wrap():
            unix.request("POST", f"/v1/keys/{key}/wrap", body=body, headers={"content-type": "application/json"})
            r = unix.getresponse()
            r.read()
            assert r.status == 200, r.status
        unix_rps = measure("service socket wrap", n, wrap)
        print(f"xks encrypt / service-socket wrap throughput: {xks_rps / unix_rps:.2f}x")


if __name__ == "__main__":
    main(sys.argv[1:])
