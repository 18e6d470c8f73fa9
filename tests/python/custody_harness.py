"""A real custodyd on a fresh SoftHSMv2 token in a temp dir, for the Python client's tests: the
same recipe as tests/support/daemon_process.cpp (token from softhsm2-util, operators alice and
bob with EC P-256 keys made by openssl, approvals signed with `openssl dgst -sha256 -sign`)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, Optional, Tuple

SOURCE_DIR = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(SOURCE_DIR, "clients", "python"))

from custody._transport import ConnectionPool  # noqa: E402

CUSTODYD = os.environ.get("CUSTODYD") or os.path.join(SOURCE_DIR, "build", "daemon", "custodyd")
SOFTHSM_MODULE = os.environ.get("CUSTODY_SOFTHSM_MODULE") or "/usr/lib/softhsm/libsofthsm2.so"
PIN = "test-pin-1234"


def run(*cmd: str, input: Optional[bytes] = None, env: Optional[Dict[str, str]] = None) -> bytes:
    done = subprocess.run(cmd, input=input, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {done.stderr.decode(errors='replace')}")
    return done.stdout


class Daemon:
    def __init__(self, extra_limits: str = ""):
        self.dir = tempfile.mkdtemp(prefix="custody-py-test-")
        self.softhsm_conf = os.path.join(self.dir, "softhsm2.conf")
        os.makedirs(os.path.join(self.dir, "tokens"))
        with open(self.softhsm_conf, "w") as f:
            f.write(f"directories.tokendir = {self.dir}/tokens\nobjectstore.backend = file\nlog.level = ERROR\n")
        pin_file = os.path.join(self.dir, "token.pin")
        with open(os.open(pin_file, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
            f.write(PIN)
        env = dict(os.environ, SOFTHSM2_CONF=self.softhsm_conf)
        run("softhsm2-util", "--init-token", "--free", "--label", "custody-py", "--pin", PIN, "--so-pin", "so-pin-5678",
            env=env)
        for name in ("alice", "bob"):
            key = self.operator_key(name)
            run("openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", key)
            run("openssl", "pkey", "-in", key, "-pubout", "-out", os.path.join(self.dir, f"{name}.pub"))
        self.service_socket = os.path.join(self.dir, "service.sock")
        self.admin_socket = os.path.join(self.dir, "admin.sock")
        self.audit_path = os.path.join(self.dir, "audit.jsonl")
        config = f"""token:
  module: {SOFTHSM_MODULE}
  label: custody-py
  pin: {{file: {pin_file}}}
  sessions: 2
state:
  path: {self.dir}/state.db
audit:
  path: {self.audit_path}
  durability: group
sockets:
  service: {{path: {self.service_socket}, mode: "0660"}}
  admin: {{path: {self.admin_socket}, mode: "0600"}}
limits:
{extra_limits}{self._default_limit(extra_limits, "idle_timeout", "30s")}{self._default_limit(extra_limits, "request_timeout", "10s")}dual_control:
  operators:
    - {{name: alice, public_key: {self.dir}/alice.pub}}
    - {{name: bob, public_key: {self.dir}/bob.pub}}
"""
        self.config_path = os.path.join(self.dir, "custodyd.yaml")
        with open(self.config_path, "w") as f:
            f.write(config)
        self.process: Optional[subprocess.Popen] = None
        self._admin = ConnectionPool(self.admin_socket, 10.0)
        self.start()

    @staticmethod
    def _default_limit(extra_limits: str, key: str, value: str) -> str:
        # The harness's own limit, unless extra_limits sets it (one key may appear only once).
        return "" if f"  {key}:" in extra_limits else f"  {key}: {value}\n"

    def operator_key(self, name: str) -> str:
        return os.path.join(self.dir, f"{name}.key")

    def start(self, timeout: float = 20.0) -> None:
        log = open(os.path.join(self.dir, "custodyd.log"), "ab")
        self.process = subprocess.Popen([CUSTODYD, "--config", self.config_path], stdout=log, stderr=log,
                                        env=dict(os.environ, SOFTHSM2_CONF=self.softhsm_conf))
        log.close()
        deadline = time.monotonic() + timeout
        probe = ConnectionPool(self.service_socket, 2.0)
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"custodyd exited at start:\n{self.log()}")
            try:
                if probe.send("GET", "/v1/health", None, {}).status == 200:
                    probe.close()
                    return
            except Exception:
                pass
            time.sleep(0.02)
        raise RuntimeError(f"custodyd did not become healthy:\n{self.log()}")

    def log(self) -> str:
        with open(os.path.join(self.dir, "custodyd.log"), errors="replace") as f:
            return f.read()

    def stop(self) -> None:
        self._admin.close()
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.dir, ignore_errors=True)

    def admin(self, method: str, path: str, body: Optional[Dict[str, Any]] = None) -> Tuple[int, Dict[str, Any]]:
        data = json.dumps(body).encode() if body is not None else None
        raw = self._admin.send(method, path, data, {"Content-Type": "application/json"} if data else {})
        return raw.status, json.loads(raw.body) if raw.body else {}

    def approve(self, request_id: str, operator: str) -> Tuple[int, Dict[str, Any]]:
        import base64
        status, shown = self.admin("GET", f"/v1/admin/requests/{request_id}")
        if status != 200:
            return status, shown
        challenge = base64.b64decode(shown["challenge"])
        signature = run("openssl", "dgst", "-sha256", "-sign", self.operator_key(operator), input=challenge)
        return self.admin("POST", f"/v1/admin/requests/{request_id}/approvals",
                          {"operator": operator, "signature": base64.b64encode(signature).decode()})

    def admin_operation(self, operation: str, params: Dict[str, Any]) -> Dict[str, Any]:
        """Proposes an operation, approves it as alice and bob; the executed request."""
        status, proposed = self.admin("POST", "/v1/admin/requests", {"operation": operation, "params": params})
        if status != 201:
            raise RuntimeError(f"{operation} refused: {status} {proposed}")
        request_id = proposed["request"]["id"]
        for operator in ("alice", "bob"):
            status, answer = self.approve(request_id, operator)
            if status != 200:
                raise RuntimeError(f"approval by {operator} refused: {status} {answer}")
        if answer["request"]["state"] != "executed":
            raise RuntimeError(f"{operation} did not execute: {answer}")
        return answer["request"]

    def create_key(self, name: str, algorithm: str, operations=("wrap", "unwrap", "datakey", "rewrap", "derive"),
                   uid: Optional[int] = None) -> None:
        policy = [{"uid": os.getuid() if uid is None else uid, "operations": list(operations)}]
        self.admin_operation("create-key", {"name": name, "algorithm": algorithm, "policy": policy})

    def audit_records(self):
        with open(self.audit_path) as f:
            return [json.loads(line) for line in f if line.strip()]


_shared: Optional[Daemon] = None


def shared_daemon() -> Daemon:
    """One daemon (and its keys) for every test module of the run, stopped at exit."""
    global _shared
    if _shared is None:
        import atexit
        _shared = Daemon()
        atexit.register(_shared.stop)
        _shared.create_key("app", "aes-256-gcm")
        _shared.create_key("other", "aes-256-gcm")
        _shared.create_key("derive", "hmac-sha256", operations=("derive",))
        # A key whose policy names another uid only: this process is refused (403).
        _shared.create_key("foreign", "aes-256-gcm", uid=os.getuid() + 4242)
        _shared.create_key("unwrap-only", "aes-256-gcm", operations=("unwrap",))
    return _shared
