#!/usr/bin/env python3
"""docs/openapi.yaml checked against a real custodyd.

1. The routes the document lists, per socket, are the routes daemon/service/routes.cpp registers,
   and the running daemon agrees: every documented path answers 405 to a method it does not serve
   (so the router knows the path), the same path on a socket that does not serve it answers 404,
   and undocumented paths answer 404.
2. custodyd runs on a fresh SoftHSMv2 token in a temp dir; keys are made through dual control
   (proposals signed by two operator keys with openssl). Every route is called over AF_UNIX, for
   success and its main error cases, and each answer is checked against the document: the status
   must be listed for that route, the listed headers (X-Request-Id, Retry-After) must be present
   and valid, the Content-Type must be the listed media type, and the body must validate against
   the listed JSON Schema (Draft 2020-12). The signed documents inside base64 fields (attestation
   report, admin challenge) are validated against their schemas too, and so is every request body
   the daemon accepted.

Usage: openapi_test.py --source-dir DIR --custodyd PATH [--softhsm-module PATH]
Needs python3-yaml and python3-jsonschema (Debian), openssl, softhsm2-util.
"""
import argparse
import base64
import http.client
import json
import os
import re
import resource
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

try:
    import jsonschema
    import yaml
except ImportError as e:  # a missing module is a broken setup, never a pass
    sys.exit(f"openapi_test: {e}; install python3-yaml and python3-jsonschema (scripts/bootstrap)")

METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
SOCKETS = ("service", "admin")


class Failure(Exception):
    pass


def fail(message):
    raise Failure(message)


# ---------------------------------------------------------------- the document

class Spec:
    def __init__(self, path):
        with open(path, encoding="utf-8") as f:
            self.doc = yaml.safe_load(f)
        if not str(self.doc.get("openapi", "")).startswith("3.1"):
            fail(f"{path}: openapi must be 3.1.x, not {self.doc.get('openapi')!r}")
        # (socket, METHOD, template) -> operation, refs resolved
        self.ops = {}
        for template, item in self.doc["paths"].items():
            sockets = item.get("x-custody-sockets")
            if not sockets or not set(sockets) <= set(SOCKETS):
                fail(f"{template}: x-custody-sockets must list service and/or admin, not {sockets!r}")
            server_sockets = {s.get("x-custody-socket") for s in item.get("servers", [])}
            if server_sockets != set(sockets):
                fail(f"{template}: servers name sockets {sorted(server_sockets)}, x-custody-sockets {sorted(sockets)}")
            for method in METHODS:
                if method not in item:
                    continue
                op = self.resolve(item[method])
                tags = set(op.get("tags", []))
                if tags != {s + "-socket" for s in sockets}:
                    fail(f"{method.upper()} {template}: tags {sorted(tags)} do not match sockets {sorted(sockets)}")
                for s in sockets:
                    self.ops[(s, method.upper(), template)] = op
        self.patterns = [(t, re.compile("^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(t)) + "$"))
                         for t in self.doc["paths"]]

    def lookup(self, ref):
        if not ref.startswith("#/"):
            fail(f"only local $refs are used, not {ref}")
        node = self.doc
        for part in ref[2:].split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
        return node

    def resolve(self, node, depth=0):
        """A deep copy with every local $ref replaced by its target (the document has no cycles)."""
        if depth > 64:
            fail("$ref nesting deeper than 64: a cycle?")
        if isinstance(node, list):
            return [self.resolve(n, depth + 1) for n in node]
        if not isinstance(node, dict):
            return node
        if "$ref" in node:
            target = self.resolve(self.lookup(node["$ref"]), depth + 1)
            rest = {k: self.resolve(v, depth + 1) for k, v in node.items() if k != "$ref"}
            if rest:
                if not isinstance(target, dict):
                    fail(f"$ref {node['$ref']} with siblings must point at an object")
                target = {**target, **rest}
            return target
        return {k: self.resolve(v, depth + 1) for k, v in node.items()}

    def schema(self, name):
        return self.resolve(self.doc["components"]["schemas"][name])

    def response(self, name):
        return self.resolve(self.doc["components"]["responses"][name])

    def template_of(self, path):
        for template, rx in self.patterns:
            if rx.match(path):
                return template
        return None

    def routes(self):
        return {(s, m, t) for (s, m, t) in self.ops}


def validate(schema, instance, what):
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as e:
        fail(f"{what}: the document's schema is not valid JSON Schema: {e.message}")
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(instance), key=lambda e: list(e.absolute_path))
    if errors:
        def describe(e):
            # For oneOf/anyOf, the closest branch's own complaint says more than "not valid under any".
            inner = jsonschema.exceptions.best_match(e.context) if e.context else None
            text = f"  at {'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message[:300]}"
            if inner is not None:
                text += f"\n    closest: at {'/'.join(map(str, inner.absolute_path)) or '(root)'}: {inner.message[:300]}"
            return text
        detail = "\n".join(describe(e) for e in errors[:5])
        fail(f"{what}: the body does not validate against the document:\n{detail}\n  body: {json.dumps(instance)[:1500]}")


# ---------------------------------------------------------------- the route table in the source

def source_routes(routes_cpp):
    """(socket, METHOD, pattern) for every r.add(...) in service_routes() and admin_routes()."""
    with open(routes_cpp, encoding="utf-8") as f:
        text = f.read()
    found = set()
    for socket_name, function in (("service", "service_routes"), ("admin", "admin_routes")):
        m = re.search(r"Router\s+" + function + r"\s*\([^)]*\)\s*\{(.*?)\n\}", text, re.S)
        if not m:
            fail(f"{routes_cpp}: no function {function}() found; the parser needs updating")
        adds = re.findall(r'\.add\(\s*"([A-Z]+)"\s*,\s*"([^"]+)"', m.group(1))
        if not adds:
            fail(f"{routes_cpp}: {function}() registers no route the parser can read")
        found |= {(socket_name, method, path) for method, path in adds}
    return found


# ---------------------------------------------------------------- HTTP over AF_UNIX

class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout=15):
        super().__init__("custody", timeout=timeout)
        self.unix_path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self.unix_path)
        self.sock = s


class Answer:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers  # lower-case name -> value
        self.body = body
        self.json = None

    def header(self, name):
        return self.headers.get(name.lower())


def read_answer(response):
    body = response.read()
    headers = {k.lower(): v for k, v in response.getheaders()}
    return Answer(response.status, headers, body)


class Client:
    """One kept-alive connection to a socket; reopened when the daemon closed it."""

    def __init__(self, path):
        self.path = path
        self.conn = None

    def send(self, method, target, body=None, headers=None):
        data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
        h = dict(headers or {})
        if data is not None:
            h.setdefault("Content-Type", "application/json")
        for attempt in range(2):
            if self.conn is None:
                self.conn = UnixHTTPConnection(self.path)
            try:
                self.conn.request(method, target, body=data, headers=h)
                response = self.conn.getresponse()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                # A kept-alive connection the daemon had closed: nothing was served on it.
                self.conn.close()
                self.conn = None
                if attempt:
                    raise
                continue
            answer = read_answer(response)
            if (answer.header("Connection") or "").lower() == "close":
                self.conn.close()
                self.conn = None
            return answer
        raise AssertionError("unreachable")

    def close(self):
        if self.conn:
            self.conn.close()
            self.conn = None


def raw_exchange(path, data):
    """Sends raw bytes on a fresh connection and reads one HTTP response."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(15)
    s.connect(path)
    try:
        if data:
            s.sendall(data)
        response = http.client.HTTPResponse(s)
        response.begin()
        return read_answer(response)
    finally:
        s.close()


# ---------------------------------------------------------------- the checks

class Checker:
    def __init__(self, spec, sockets):
        self.spec = spec
        self.sockets = sockets  # name -> socket path
        self.clients = {name: Client(path) for name, path in sockets.items()}
        self.seen = {}  # (socket, METHOD, template) -> set of statuses
        self.count = 0

    def check(self, socket_name, method, path, answer, request_body=None, template=None):
        """Validates one answer against the document's operation for (socket, method, path)."""
        template = template or self.spec.template_of(path)
        key = (socket_name, method, template)
        op = self.spec.ops.get(key)
        where = f"{socket_name} socket: {method} {path}"
        if op is None:
            fail(f"{where}: not in the document")
        response = op["responses"].get(str(answer.status))
        if response is None:
            fail(f"{where}: answered {answer.status}, a status the document does not list for it "
                 f"(lists {sorted(op['responses'])}); body {answer.body[:300]!r}")
        self.validate_response(where, response, answer)
        item_failed = isinstance(answer.json, dict) and any(
            isinstance(i, dict) and "error" in i for i in answer.json.get("batch", []))
        if request_body is not None and 200 <= answer.status < 300 and isinstance(request_body, dict) and not item_failed:
            rb = op.get("requestBody")
            if rb is None:
                fail(f"{where}: the daemon accepted a body, the document lists none")
            validate(rb["content"]["application/json"]["schema"], request_body, f"{where}: request body the daemon accepted")
        self.seen.setdefault(key, set()).add(answer.status)
        self.count += 1
        return answer

    def validate_response(self, where, response, answer):
        where = f"{where} → {answer.status}"
        for name, header in response.get("headers", {}).items():
            value = answer.header(name)
            if value is None:
                if header.get("required"):
                    fail(f"{where}: header {name} is missing")
                continue
            validate(header["schema"], value, f"{where}: header {name}")
        content = response.get("content", {})
        ctype = answer.header("Content-Type") or ""
        media = ctype.split(";")[0].strip()
        if media not in content:
            fail(f"{where}: Content-Type {ctype!r}, the document lists {sorted(content)}")
        listed = content[media].get("x-content-type")
        if listed and ctype.replace(" ", "") != listed.replace(" ", ""):
            fail(f"{where}: Content-Type {ctype!r}, the document says {listed!r}")
        schema = content[media]["schema"]
        if media == "application/json":
            try:
                answer.json = json.loads(answer.body)
            except ValueError:
                fail(f"{where}: the body is not JSON: {answer.body[:200]!r}")
            validate(schema, answer.json, where)
            self.validate_embedded(where, answer.json)
            error = answer.json.get("error") if isinstance(answer.json, dict) else None
            if isinstance(error, dict) and "request_id" in error and error["request_id"] != answer.header("X-Request-Id"):
                fail(f"{where}: error.request_id {error['request_id']!r} is not the X-Request-Id {answer.header('X-Request-Id')!r}")
        elif schema.get("format") != "binary":
            validate(schema, answer.body.decode("utf-8"), where)

    def validate_embedded(self, where, body):
        """The signed documents carried in base64 fields (contentSchema in the document)."""
        if not isinstance(body, dict):
            return
        if {"report", "signature", "public_key", "key_id"} <= body.keys():
            validate(self.spec.schema("AttestationReport"), json.loads(base64.b64decode(body["report"])), where + ": report")
        items = [body] + list(body.get("requests", []))
        for item in items:
            if isinstance(item, dict) and "challenge" in item:
                validate(self.spec.schema("AdminChallenge"), json.loads(base64.b64decode(item["challenge"])), where + ": challenge")

    # The calls: send, check, and hand the answer back.
    def call(self, socket_name, method, path, body=None, expect=None, headers=None, template=None):
        answer = self.clients[socket_name].send(method, path, body, headers)
        self.check(socket_name, method, path, answer, body if isinstance(body, dict) else None, template)
        if expect is not None and answer.status != expect:
            fail(f"{socket_name} socket: {method} {path}: expected {expect}, got {answer.status}: {answer.body[:400]!r}")
        return answer

    def service(self, method, path, body=None, expect=None, **kw):
        return self.call("service", method, path, body, expect, **kw)

    def admin(self, method, path, body=None, expect=None, **kw):
        return self.call("admin", method, path, body, expect, **kw)

    def expect_component(self, socket_name, method, path, answer, component, status):
        """An answer outside any operation (405, 404 for an unknown path): the shared response."""
        where = f"{socket_name} socket: {method} {path}"
        if answer.status != status:
            fail(f"{where}: expected {status}, got {answer.status}: {answer.body[:300]!r}")
        self.validate_response(where, self.spec.response(component), answer)
        self.count += 1


# ---------------------------------------------------------------- the daemon

def run(cmd, **kw):
    r = subprocess.run(cmd, capture_output=True, **kw)
    if r.returncode != 0:
        fail(f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr.decode(errors='replace')[:500]}")
    return r.stdout


class Daemon:
    def __init__(self, custodyd, module, workdir, custodyctl=None):
        self.dir = workdir
        self.custodyd = custodyd
        self.env = dict(os.environ, SOFTHSM2_CONF=os.path.join(workdir, "softhsm2.conf"))
        os.makedirs(os.path.join(workdir, "tokens"))
        with open(self.env["SOFTHSM2_CONF"], "w") as f:
            f.write(f"directories.tokendir = {workdir}/tokens\nobjectstore.backend = file\nlog.level = ERROR\n")
        pin = "openapi-pin-1234"
        pin_file = os.path.join(workdir, "token.pin")
        with open(os.open(pin_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
            f.write(pin)
        run(["softhsm2-util", "--init-token", "--free", "--label", "custody-openapi", "--pin", pin,
             "--so-pin", "openapi-so-5678"], env=self.env)
        for name in ("alice", "bob"):
            key = self.operator_key(name)
            run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", key])
            run(["openssl", "pkey", "-in", key, "-pubout", "-out", os.path.join(workdir, name + ".pub")])
        self.service_socket = os.path.join(workdir, "service.sock")
        self.admin_socket = os.path.join(workdir, "admin.sock")
        self.audit = os.path.join(workdir, "audit.jsonl")
        config = f"""token:
  module: {module}
  label: custody-openapi
  pin: {{file: {pin_file}}}
  sessions: 2
state:
  path: {workdir}/state.db
audit:
  path: {self.audit}
  durability: group
sockets:
  service: {{path: {self.service_socket}, mode: "0660"}}
  admin: {{path: {self.admin_socket}, mode: "0600"}}
limits:
  max_body_bytes: 16384
  max_connections_per_uid: 3
  request_timeout: 10s
dual_control:
  operators:
    - {{name: alice, public_key: {workdir}/alice.pub}}
    - {{name: bob, public_key: {workdir}/bob.pub}}
"""
        # The recovery ceremony (docs/recovery.md) before the daemon starts: a recovery key pair in
        # this token (user PIN) and its public half trusted by the SO, so the one daemon can export
        # a bundle and check it.
        self.recovery_key_id = None
        if custodyctl:
            token = ["--module", module, "--token-label", "custody-openapi"]
            pem = os.path.join(workdir, "recovery.pem")
            init = run([custodyctl, "--json", "recovery", "init", *token, "--pin-file", pin_file, "--out", pem], env=self.env)
            self.recovery_key_id = json.loads(init)["key_id"]
            so_pin = os.path.join(workdir, "so.pin")
            with open(os.open(so_pin, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
                f.write("openapi-so-5678\n")
            run([custodyctl, "recovery", "trust", pem, *token, "--so-pin-file", so_pin], env=self.env)
        self.config = os.path.join(workdir, "custodyd.yaml")
        with open(self.config, "w") as f:
            f.write(config)
        self.log = open(os.path.join(workdir, "custodyd.log"), "wb")
        self.proc = subprocess.Popen([custodyd, "--config", self.config], env=self.env, stdout=self.log,
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while True:
            if self.proc.poll() is not None:
                fail("custodyd exited at start:\n" + self.log_text())
            try:
                if raw_exchange(self.service_socket, b"GET /v1/health HTTP/1.1\r\nHost: c\r\n\r\n").status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                fail("custodyd did not become healthy within 20 s:\n" + self.log_text())
            time.sleep(0.02)

    def operator_key(self, name):
        return os.path.join(self.dir, name + ".key")

    def log_text(self):
        self.log.flush()
        with open(os.path.join(self.dir, "custodyd.log"), errors="replace") as f:
            return f.read()[-4000:]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def sign(key_file, challenge_b64):
    challenge = base64.b64decode(challenge_b64)
    return base64.b64encode(run(["openssl", "dgst", "-sha256", "-sign", key_file], input=challenge)).decode()


# ---------------------------------------------------------------- the scenario

def b64(data):
    return base64.b64encode(data).decode()


def admin_operation(c, d, operation, params):
    """Propose, then approve as alice and bob; returns the executed request."""
    proposed = c.admin("POST", "/v1/admin/requests", {"operation": operation, "params": params}, expect=201)
    rid = proposed.json["request"]["id"]
    first = c.admin("POST", f"/v1/admin/requests/{rid}/approvals",
                    {"operator": "alice", "signature": sign(d.operator_key("alice"), proposed.json["challenge"])}, expect=200)
    if first.json["request"]["state"] != "pending":
        fail(f"{operation}: after one approval the request is {first.json['request']['state']}, not pending")
    done = c.admin("POST", f"/v1/admin/requests/{rid}/approvals",
                   {"operator": "bob", "signature": sign(d.operator_key("bob"), proposed.json["challenge"])}, expect=200)
    request = done.json["request"]
    if request["state"] != "executed":
        fail(f"{operation} {params}: {request['state']}: {request.get('error')}")
    return request


def route_probes(c, spec):
    """Every documented path exists on its sockets and on no other; undocumented paths are 404."""
    samples = {"{name}": "app", "{id}": "0" * 32}
    for template, item in spec.doc["paths"].items():
        path = template
        for k, v in samples.items():
            path = path.replace(k, v)
        served = set(item["x-custody-sockets"])
        unlisted = next(m for m in ("DELETE", "PUT", "PATCH") if m.lower() not in item)
        for socket_name in SOCKETS:
            answer = c.clients[socket_name].send(unlisted, path)
            if socket_name in served:
                c.expect_component(socket_name, unlisted, path, answer, "MethodNotAllowed", 405)
            else:
                c.expect_component(socket_name, unlisted, path, answer, "NotFound", 404)
                for method in METHODS:
                    if method in item:
                        answer = c.clients[socket_name].send(method.upper(), path, {} if method == "post" else None)
                        c.expect_component(socket_name, method.upper(), path, answer, "NotFound", 404)
    for socket_name in SOCKETS:
        for path in ("/", "/v1", "/v1/keys/app/encrypt", "/v1/admin", "/v1/admin/requests/x/y/z", "/metrics/x",
                     "/v2/keys", "/v1/keys/app/wrap/extra", "/v1/healthz"):
            for method in ("GET", "POST"):
                answer = c.clients[socket_name].send(method, path, {} if method == "POST" else None)
                c.expect_component(socket_name, method, path, answer, "NotFound", 404)


def admin_scenario(c, d, me):
    everything = [{"uid": me, "operations": ["wrap", "unwrap", "datakey", "rewrap"]}]
    created = admin_operation(c, d, "create-key", {"name": "app", "algorithm": "aes-256-gcm", "policy": everything,
                                                   "rotation_period": "90d"})
    if created["result"]["key"]["name"] != "app":
        fail("create-key: result.key is not the key made")
    admin_operation(c, d, "create-key", {"name": "kdf", "algorithm": "hmac-sha256",
                                         "policy": [{"uid": me, "operations": ["derive"]}]})
    admin_operation(c, d, "create-key", {"name": "other", "algorithm": "aes-256-gcm",
                                         "policy": [{"uid": 4242, "operations": ["wrap"]}]})
    admin_operation(c, d, "create-key", {"name": "off", "algorithm": "aes-256-gcm", "policy": everything})
    admin_operation(c, d, "disable-key", {"name": "off"})

    # Proposals refused: bad operation or params (400), unknown key (404), state (409).
    c.admin("POST", "/v1/admin/requests", {"operation": "explode-key", "params": {"name": "app"}}, expect=400)
    c.admin("POST", "/v1/admin/requests", {"operation": "create-key", "params": {"name": "x", "algorithm": "des"}}, expect=400)
    c.admin("POST", "/v1/admin/requests", {"operation": "rotate-key", "params": {"name": "app"}, "extra": 1}, expect=400)
    c.admin("POST", "/v1/admin/requests", b"{not json", expect=400)
    c.admin("POST", "/v1/admin/requests", {"operation": "rotate-key", "params": {"name": "nope"}}, expect=404)
    c.admin("POST", "/v1/admin/requests", {"operation": "create-key", "params": {"name": "app", "algorithm": "aes-256-gcm"}}, expect=409)
    c.admin("POST", "/v1/admin/requests", {"operation": "rotate-key", "params": {"name": "off"}}, expect=409)

    # Approvals refused, and a cancel.
    p = c.admin("POST", "/v1/admin/requests", {"operation": "enable-key", "params": {"name": "off"}}, expect=201)
    rid, challenge = p.json["request"]["id"], p.json["challenge"]
    approvals = f"/v1/admin/requests/{rid}/approvals"
    c.admin("POST", approvals, {"operator": "mallory", "signature": sign(d.operator_key("alice"), challenge)}, expect=403)
    c.admin("POST", approvals, {"operator": "bob", "signature": sign(d.operator_key("alice"), challenge)}, expect=403)
    c.admin("POST", approvals, {"operator": "bob", "signature": "%%%"}, expect=400)
    c.admin("POST", approvals, {"operator": "bob"}, expect=400)
    c.admin("POST", approvals, {"operator": "alice", "signature": sign(d.operator_key("alice"), challenge)}, expect=200)
    c.admin("POST", approvals, {"operator": "alice", "signature": sign(d.operator_key("alice"), challenge)}, expect=409)
    c.admin("GET", f"/v1/admin/requests/{rid}", expect=200)
    cancelled = c.admin("POST", f"/v1/admin/requests/{rid}/cancel", expect=200)
    if cancelled.json["request"]["state"] != "cancelled":
        fail("cancel: the request is not cancelled")
    c.admin("POST", f"/v1/admin/requests/{rid}/cancel", expect=409)
    c.admin("POST", approvals, {"operator": "bob", "signature": sign(d.operator_key("bob"), challenge)}, expect=409)
    unknown = "f" * 32
    c.admin("GET", f"/v1/admin/requests/{unknown}", expect=404)
    c.admin("POST", f"/v1/admin/requests/{unknown}/approvals", {"operator": "alice", "signature": b64(b"x")}, expect=404)
    c.admin("POST", f"/v1/admin/requests/{unknown}/cancel", expect=404)
    listed = c.admin("GET", "/v1/admin/requests", expect=200)
    if len(listed.json["requests"]) < 6:
        fail("GET /v1/admin/requests lists fewer requests than were made")

    check = c.admin("POST", "/v1/admin/keys/check", expect=200)
    if not check.json["clean"]:
        fail(f"keys check is not clean on a fresh token: {check.json}")

    # BYOK: a job, the public-cloud recipe with openssl, import (and the errors).
    jobs = c.admin("GET", "/v1/admin/import-jobs", expect=200)
    rsa = [m for m in jobs.json["methods"] if m.startswith("rsa-oaep-3072")]
    if not rsa:
        fail(f"the token offers no rsa-oaep-3072 method: {jobs.json['methods']}")
    method = next((m for m in rsa if "sha256" in m), rsa[0])
    executed = admin_operation(c, d, "create-import-job", {"key_name": "byok", "algorithm": "aes-256-gcm", "method": method,
                                                           "policy": everything})
    job = executed["result"]["import_job"]
    c.admin("GET", f"/v1/admin/import-jobs/{job['id']}", expect=200)
    c.admin("GET", f"/v1/admin/import-jobs/{unknown}", expect=404)
    imp = f"/v1/admin/import-jobs/{job['id']}/import"
    c.admin("POST", imp, {"wrapped_key": b64(b"short")}, expect=400)
    c.admin("POST", imp, {"wrapped_key": b64(b"short"), "colour": "red"}, expect=400)
    c.admin("POST", f"/v1/admin/import-jobs/{unknown}/import", {"wrapped_key": b64(b"x" * 424)}, expect=404)
    payload, kcv = byok_payload(d.dir, job["public_key"], "sha1" if "sha1" in method else "sha256")
    imported = c.admin("POST", imp, {"wrapped_key": b64(payload), "kcv": kcv.lower()}, expect=200)
    if imported.json["kcv"] != kcv or imported.json["key"] != "byok":
        fail(f"import: {imported.json} (kcv {kcv} expected)")
    c.admin("POST", imp, {"wrapped_key": b64(payload)}, expect=409)
    c.admin("GET", "/v1/admin/import-jobs", expect=200)


def byok_payload(workdir, public_key_pem, md):
    """CONTRACT §8's recipe: RSA-OAEP(E) || AES-KWP(E, K); and K's KCV."""
    k = os.urandom(32)
    e = os.urandom(32)
    paths = {n: os.path.join(workdir, n) for n in ("job.pem", "E.bin", "E.wrapped", "K.bin", "K.wrapped", "zero.bin", "kcv.bin")}
    for name, data in (("job.pem", public_key_pem.encode()), ("E.bin", e), ("K.bin", k), ("zero.bin", bytes(16))):
        with open(paths[name], "wb") as f:
            f.write(data)
    run(["openssl", "pkeyutl", "-encrypt", "-pubin", "-inkey", paths["job.pem"], "-in", paths["E.bin"], "-out", paths["E.wrapped"],
         "-pkeyopt", "rsa_padding_mode:oaep", "-pkeyopt", f"rsa_oaep_md:{md}", "-pkeyopt", f"rsa_mgf1_md:{md}"])
    run(["openssl", "enc", "-id-aes256-wrap-pad", "-iv", "A65959A6", "-K", e.hex(), "-in", paths["K.bin"], "-out", paths["K.wrapped"]])
    run(["openssl", "enc", "-aes-256-ecb", "-nopad", "-K", k.hex(), "-in", paths["zero.bin"], "-out", paths["kcv.bin"]])
    with open(paths["E.wrapped"], "rb") as f1, open(paths["K.wrapped"], "rb") as f2, open(paths["kcv.bin"], "rb") as f3:
        return f1.read() + f2.read(), f3.read()[:3].hex().upper()


def with_version(blob_b64, version):
    blob = bytearray(base64.b64decode(blob_b64))
    at = 5 + blob[4]  # "CST" 0x01, u8 len(name), name, u32be key_version
    blob[at:at + 4] = version.to_bytes(4, "big")
    return b64(bytes(blob))


def flip_last_byte(blob_b64):
    blob = bytearray(base64.b64decode(blob_b64))
    blob[-1] ^= 1
    return b64(bytes(blob))


def service_scenario(c, d):
    ctx = {"tenant": "t-1", "purpose": "openapi"}
    wrapped = c.service("POST", "/v1/keys/app/wrap", {"plaintext": b64(b"hello"), "context": ctx}, expect=200).json
    c.service("POST", "/v1/keys/app/wrap", {"plaintext": b64(b"x")}, expect=200)
    batch = c.service("POST", "/v1/keys/app/wrap", {"batch": [{"plaintext": b64(b"a")}, {"plaintext": "%%"}]}, expect=200).json
    if "error" not in batch["batch"][1] or "ciphertext" not in batch["batch"][0]:
        fail(f"wrap batch: {batch}")
    c.service("POST", "/v1/keys/app/wrap", {"plaintext": "not base64!"}, expect=400)
    c.service("POST", "/v1/keys/app/wrap", {"plaintext": b64(b"x" * 8193)}, expect=400)
    c.service("POST", "/v1/keys/app/wrap", {"plaintext": b64(b"x"), "contxt": {}}, expect=400)
    c.service("POST", "/v1/keys/app/wrap", {"plaintext": b64(b"x"), "context": {"": "v"}}, expect=400)
    c.service("POST", "/v1/keys/app/wrap", {"batch": []}, expect=400)
    c.service("POST", "/v1/keys/Bad!Name/wrap", {"plaintext": b64(b"x")}, expect=400)
    c.service("POST", "/v1/keys/other/wrap", {"plaintext": b64(b"x")}, expect=403)
    c.service("POST", "/v1/keys/missing/wrap", {"plaintext": b64(b"x")}, expect=403)
    c.service("POST", "/v1/keys/off/wrap", {"plaintext": b64(b"x")}, expect=409)
    # The wrong algorithm: 400, or 403 when the policy is checked first (kdf's allows derive only).
    c.service("POST", "/v1/keys/kdf/wrap", {"plaintext": b64(b"x")})

    opened = c.service("POST", "/v1/keys/app/unwrap", {"ciphertext": wrapped["ciphertext"], "context": ctx}, expect=200).json
    if base64.b64decode(opened["plaintext"]) != b"hello":
        fail("unwrap did not give back the plaintext")
    c.service("POST", "/v1/keys/app/unwrap", {"batch": [{"ciphertext": wrapped["ciphertext"], "context": ctx},
                                                       {"ciphertext": wrapped["ciphertext"]}]}, expect=200)
    c.service("POST", "/v1/keys/app/unwrap", {"ciphertext": wrapped["ciphertext"]}, expect=400)  # context differs
    c.service("POST", "/v1/keys/app/unwrap", {"ciphertext": flip_last_byte(wrapped["ciphertext"]), "context": ctx}, expect=400)
    c.service("POST", "/v1/keys/app/unwrap", {"ciphertext": b64(b"CST")}, expect=400)
    c.service("POST", "/v1/keys/app/unwrap", {"ciphertext": with_version(wrapped["ciphertext"], 99), "context": ctx}, expect=404)
    c.service("POST", "/v1/keys/other/unwrap", {"ciphertext": wrapped["ciphertext"], "context": ctx}, expect=403)

    c.service("POST", "/v1/keys/app/datakey", {}, expect=200)
    dk = c.service("POST", "/v1/keys/app/datakey", {"length": 16, "context": ctx, "include_plaintext": False}, expect=200).json
    if "plaintext" in dk:
        fail("datakey with include_plaintext false answered a plaintext")
    c.service("POST", "/v1/keys/app/datakey", {"batch": [{}, {"length": 0}]}, expect=200)
    c.service("POST", "/v1/keys/app/datakey", {"length": 65}, expect=400)
    c.service("POST", "/v1/keys/app/datakey", {"include_plaintext": "yes"}, expect=400)
    c.service("POST", "/v1/keys/off/datakey", {}, expect=409)

    rewrapped = c.service("POST", "/v1/keys/app/rewrap", {"ciphertext": wrapped["ciphertext"], "context": ctx}, expect=200).json
    c.service("POST", "/v1/keys/app/rewrap", {"batch": [{"ciphertext": rewrapped["ciphertext"], "context": ctx}]}, expect=200)
    c.service("POST", "/v1/keys/app/rewrap", {"ciphertext": flip_last_byte(wrapped["ciphertext"]), "context": ctx}, expect=400)
    c.service("POST", "/v1/keys/app/rewrap", {"ciphertext": with_version(wrapped["ciphertext"], 99), "context": ctx}, expect=404)

    c.service("POST", "/v1/keys/kdf/derive", {"info": b64(b"tenant-1"), "length": 32}, expect=200)
    c.service("POST", "/v1/keys/kdf/derive", {"length": 1024, "version": 1}, expect=200)
    c.service("POST", "/v1/keys/kdf/derive", {"batch": [{"length": 8}, {"length": 2000}]}, expect=200)
    c.service("POST", "/v1/keys/kdf/derive", {"info": b64(b"x")}, expect=400)
    c.service("POST", "/v1/keys/kdf/derive", {"length": 16, "version": 7}, expect=404)
    c.service("POST", "/v1/keys/app/derive", {"length": 16})  # aes and no derive in its policy: 400 or 403
    c.service("POST", "/v1/keys/missing/derive", {"length": 16}, expect=403)

    # The byok key, imported on the admin socket, serves the data plane.
    c.service("POST", "/v1/keys/byok/wrap", {"plaintext": b64(b"imported")}, expect=200)

    keys = c.service("GET", "/v1/keys", expect=200).json
    names = {k["name"] for k in keys["keys"]}
    if "other" in names or "app" not in names:
        fail(f"GET /v1/keys on the service socket lists {sorted(names)}")
    c.service("GET", "/v1/keys/app", expect=200)
    c.service("GET", "/v1/keys/other", expect=403)
    c.service("GET", "/v1/keys/missing", expect=403)

    c.service("POST", "/v1/attestation", {"nonce": b64(os.urandom(32))}, expect=200)
    c.service("POST", "/v1/attestation", {"nonce": b64(b""), "keys": ["app", "kdf"]}, expect=200)
    c.service("POST", "/v1/attestation", b"", expect=200)
    c.service("POST", "/v1/attestation", {"nonce": b64(os.urandom(65))}, expect=400)
    c.service("POST", "/v1/attestation", {"keys": "app"}, expect=400)
    c.service("POST", "/v1/attestation", {"keys": ["other"]}, expect=403)
    c.service("POST", "/v1/attestation", {"keys": ["missing"]}, expect=403)

    c.service("GET", "/v1/health", expect=200)
    metrics = c.service("GET", "/metrics", expect=200)
    if b"custody_" not in metrics.body:
        fail("/metrics has no custody_ series")

    # X-Request-Id: echoed when usable, generated otherwise.
    echoed = c.service("GET", "/v1/keys/missing", headers={"X-Request-Id": "openapi-probe-1"}, expect=403)
    if echoed.header("X-Request-Id") != "openapi-probe-1" or echoed.json["error"]["request_id"] != "openapi-probe-1":
        fail("X-Request-Id was not echoed")
    generated = c.service("GET", "/v1/health", headers={"X-Request-Id": "x" * 65}, expect=200)
    if generated.header("X-Request-Id") == "x" * 65:
        fail("an X-Request-Id over 64 characters was echoed")

    # 413 and malformed HTTP, on their own connections (the daemon closes them).
    big = json.dumps({"plaintext": "A" * 20000}).encode()
    answer = raw_exchange(d.service_socket, b"POST /v1/keys/app/wrap HTTP/1.1\r\nHost: c\r\nContent-Type: application/json\r\n"
                          b"Content-Length: " + str(len(big)).encode() + b"\r\n\r\n" + big)
    c.check("service", "POST", "/v1/keys/app/wrap", answer)
    if answer.status != 413:
        fail(f"an oversized body answered {answer.status}")
    answer = raw_exchange(d.admin_socket, b"POST /v1/admin/requests HTTP/1.1\r\nHost: c\r\nContent-Length: 20000\r\n\r\n" + b"{" * 20000)
    c.check("admin", "POST", "/v1/admin/requests", answer)
    if answer.status != 413:
        fail(f"an oversized body answered {answer.status} on the admin socket")
    answer = raw_exchange(d.service_socket, b"GET /v1/health HTTP/1.1\r\nHost: c\r\nTransfer-Encoding: gzip\r\n\r\n")
    c.check("service", "GET", "/v1/health", answer)
    if answer.status != 400:
        fail(f"a malformed request answered {answer.status}")
    return wrapped


def recovery_scenario(c, d, me):
    """Export (dual control), the bundle, a drill, an import on the same token (already present), state backup."""
    if not d.recovery_key_id:
        fail("the recovery routes need --custodyctl for the recovery ceremony")
    admin_operation(c, d, "create-key", {"name": "dr", "algorithm": "aes-256-gcm", "recovery": True,
                                         "policy": [{"uid": me, "operations": ["wrap"]}]})
    c.admin("POST", "/v1/admin/requests", {"operation": "export-recovery-bundle",
                                           "params": {"recovery_key_id": d.recovery_key_id, "keys": ["app"]}}, expect=409)
    executed = admin_operation(c, d, "export-recovery-bundle", {"recovery_key_id": d.recovery_key_id, "keys": ["dr"]})
    bundle_id = executed["result"]["recovery_bundle"]["id"]
    envelope = c.admin("GET", f"/v1/admin/recovery-bundles/{bundle_id}", expect=200).json
    c.admin("GET", f"/v1/admin/recovery-bundles/{'0' * 32}", expect=404)
    pinned = c.admin("POST", "/v1/attestation", {"nonce": ""}, expect=200).json["public_key"]
    check = {"bundle": envelope, "attestation_public_key": pinned}
    drill = c.admin("POST", "/v1/admin/recovery-drills", check, expect=200).json
    if not drill["passed"]:
        fail(f"recovery drill: {drill}")
    flipped = dict(envelope, signature=b64(b"\x30\x06\x02\x01\x01\x02\x01\x01"))
    c.admin("POST", "/v1/admin/recovery-drills", {"bundle": flipped, "attestation_public_key": pinned}, expect=400)
    imported = admin_operation(c, d, "import-recovery-bundle", check)
    if imported["result"]["keys"] != [{"name": "dr", "result": "already-present"}]:
        fail(f"import-recovery-bundle: {imported['result']}")
    backup = c.call("admin", "POST", "/v1/admin/state-backup", expect=200)
    if not backup.body.startswith(b"SQLite format 3\x00"):
        fail("state-backup: the body is not an SQLite database")


def admin_read_scenario(c):
    keys = c.admin("GET", "/v1/keys", expect=200).json
    if {"app", "kdf", "other", "off", "byok"} - {k["name"] for k in keys["keys"]}:
        fail("GET /v1/keys on the admin socket does not list every key")
    c.admin("GET", "/v1/keys/other", expect=200)
    c.admin("GET", "/v1/keys/missing", expect=404)
    c.admin("POST", "/v1/attestation", {"nonce": b64(b"n")}, expect=200)
    c.admin("POST", "/v1/attestation", {"keys": ["missing"]}, expect=404)
    c.admin("POST", "/v1/attestation", {"bogus": 1}, expect=400)
    c.admin("GET", "/v1/health", expect=200)
    c.admin("GET", "/metrics", expect=200)


def version_scenario(c, d, wrapped):
    """Rotation and min_decrypt_version: a version-1 blob then answers 409."""
    ctx = {"tenant": "t-1", "purpose": "openapi"}
    rotated = admin_operation(c, d, "rotate-key", {"name": "app"})
    if rotated["result"]["key"]["current_version"] != 2:
        fail("rotate-key did not make version 2")
    again = c.service("POST", "/v1/keys/app/rewrap", {"ciphertext": wrapped["ciphertext"], "context": ctx}, expect=200).json
    if again["key_version"] != 2:
        fail("rewrap did not use the current version")
    admin_operation(c, d, "set-min-decrypt-version", {"name": "app", "version": 2})
    c.service("POST", "/v1/keys/app/unwrap", {"ciphertext": wrapped["ciphertext"], "context": ctx}, expect=409)
    c.service("POST", "/v1/keys/app/rewrap", {"ciphertext": wrapped["ciphertext"], "context": ctx}, expect=409)
    c.service("GET", "/v1/keys/app", expect=200)


def lifecycle_scenario(c, d):
    """Destruction scheduled and cancelled, a policy of every rule kind, enable: the key metadata
    in each state, and health's alarm for a use of a key pending destruction."""
    pending = admin_operation(c, d, "schedule-destruction", {"name": "off", "wait_seconds": 7 * 86400})["result"]["key"]
    if pending["state"] != "pending_destruction" or "destroy_at" not in pending:
        fail(f"schedule-destruction: {pending}")
    c.service("POST", "/v1/keys/off/wrap", {"plaintext": b64(b"x")}, expect=409)
    health = c.admin("GET", "/v1/health", expect=200).json
    if health.get("alarms", {}).get("pending_destruction_uses") != 1:
        fail(f"health does not report the use of a key pending destruction: {health}")
    c.service("GET", "/v1/health", expect=200)
    admin_operation(c, d, "cancel-destruction", {"name": "off"})
    admin_operation(c, d, "enable-key", {"name": "off"})
    policy = [{"uid": 4242, "operations": ["wrap"]}, {"gid": 4242, "operations": ["unwrap", "rewrap"]},
              {"name": "root", "operations": ["datakey"]}]
    changed = admin_operation(c, d, "set-policy", {"name": "other", "policy": policy})["result"]["key"]
    if changed["policy"] != policy:
        fail(f"set-policy: {changed['policy']}")
    c.admin("GET", "/v1/keys/off", expect=200)


def connection_limit_scenario(c, d):
    """429 with Retry-After at the per-uid connection limit (3 on the service socket)."""
    c.clients["service"].close()
    held = []
    try:
        refused = None
        for _ in range(8):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(15)
            s.connect(d.service_socket)
            held.append(s)
            # A refused connection is answered at once, before any request; give it a moment.
            readable, _, _ = select.select([s], [], [], 0.3)
            if not readable:
                s.sendall(b"GET /v1/health HTTP/1.1\r\nHost: c\r\n\r\n")
            response = http.client.HTTPResponse(s)
            response.begin()
            answer = read_answer(response)
            c.check("service", "GET", "/v1/health", answer)
            if answer.status == 429:
                refused = answer
                break
        if refused is None:
            fail("8 connections from one uid were all served; max_connections_per_uid is 3")
        if len(held) < 2:
            fail("the first connection was refused: the limit counted connections that were closed")
    finally:
        for s in held:
            s.close()
    # The daemon frees the slots when it sees the closes: wait for that, bounded.
    deadline = time.monotonic() + 10
    while True:
        answer = raw_exchange(d.service_socket, b"GET /v1/health HTTP/1.1\r\nHost: c\r\nConnection: close\r\n\r\n")
        if answer.status == 200:
            break
        if time.monotonic() > deadline:
            fail("the service socket still refuses connections 10 s after the extra ones closed")
        time.sleep(0.01)


def audit_failure_scenario(c, d):
    """The audit log cannot grow (RLIMIT_FSIZE of the daemon at its size): audited routes answer 503
    with Retry-After, health 503 with its body; metrics still 200."""
    size = os.path.getsize(d.audit)
    resource.prlimit(d.proc.pid, resource.RLIMIT_FSIZE, (size, size))
    deadline = time.monotonic() + 10
    while True:
        answer = c.service("POST", "/v1/keys/app/wrap", {"plaintext": b64(b"after")})
        if answer.status == 503:
            break
        if answer.status != 200 or time.monotonic() > deadline:
            fail(f"with the audit log unwritable a wrap answered {answer.status}: {answer.body[:300]!r}")
    if answer.json["error"]["code"] != "unavailable" or answer.header("Retry-After") is None:
        fail("the 503 is not unavailable with Retry-After")
    health = c.service("GET", "/v1/health", expect=503)
    if health.json.get("status") != "unavailable" or health.json["audit"]["writable"]:
        fail(f"health with the audit log unwritable: {health.json}")
    c.admin("GET", "/v1/health", expect=503)
    c.admin("GET", "/v1/admin/requests", expect=503)
    c.admin("POST", "/v1/admin/keys/check", expect=503)
    c.service("GET", "/v1/keys", expect=503)
    c.service("GET", "/metrics", expect=200)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--source-dir", required=True)
    ap.add_argument("--custodyd", required=True)
    ap.add_argument("--custodyctl", help="for the recovery ceremony (the recovery routes)")
    ap.add_argument("--softhsm-module", default="/usr/lib/softhsm/libsofthsm2.so")
    ap.add_argument("--spec", help="the document to check (default: SOURCE/docs/openapi.yaml)")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir")
    args = ap.parse_args()
    started = time.monotonic()

    spec = Spec(args.spec or os.path.join(args.source_dir, "docs", "openapi.yaml"))
    # Every schema in the document is valid Draft 2020-12.
    for name in spec.doc["components"]["schemas"]:
        jsonschema.Draft202012Validator.check_schema(spec.schema(name))

    documented = spec.routes()
    in_source = source_routes(os.path.join(args.source_dir, "daemon", "service", "routes.cpp"))
    # The source names path parameters freely; compare shapes.
    shape = lambda routes: {(s, m, re.sub(r"\{[^}]+\}", "{}", p)) for s, m, p in routes}
    if shape(documented) != shape(in_source):
        missing = sorted(shape(in_source) - shape(documented))
        extra = sorted(shape(documented) - shape(in_source))
        fail(f"the document's routes differ from daemon/service/routes.cpp:\n  served, not documented: {missing}\n"
             f"  documented, not served: {extra}")
    print(f"openapi_test: {len(documented)} (socket, method, path) routes documented, the same as routes.cpp")

    workdir = tempfile.mkdtemp(prefix="custody-openapi-")
    daemon = None
    c = None
    try:
        daemon = Daemon(args.custodyd, args.softhsm_module, workdir, args.custodyctl)
        c = Checker(spec, {"service": daemon.service_socket, "admin": daemon.admin_socket})
        route_probes(c, spec)
        admin_scenario(c, daemon, os.getuid())
        wrapped = service_scenario(c, daemon)
        admin_read_scenario(c)
        recovery_scenario(c, daemon, os.getuid())
        version_scenario(c, daemon, wrapped)
        lifecycle_scenario(c, daemon)
        connection_limit_scenario(c, daemon)
        audit_failure_scenario(c, daemon)

        # Every documented operation was exercised, with a success.
        for key in sorted(documented):
            statuses = c.seen.get(key, set())
            if not any(200 <= s < 300 for s in statuses):
                fail(f"{key[0]} socket: {key[1]} {key[2]} was never answered with a success (saw {sorted(statuses)})")
        all_statuses = set().union(*c.seen.values())
        for status in (200, 201, 400, 403, 404, 409, 413, 429, 503):
            if status not in all_statuses:
                fail(f"no route answered {status}; the scenario lost a case")
        for socket_name, method, template in sorted(c.seen):
            print(f"  {socket_name:7} {method:4} {template:40} {sorted(c.seen[(socket_name, method, template)])}")
        print(f"openapi_test: {c.count} answers validated against the document in {time.monotonic() - started:.1f} s")
    except Failure as e:
        print(f"openapi_test: FAIL: {e}", file=sys.stderr)
        if daemon:
            print("custodyd log (end):\n" + daemon.log_text(), file=sys.stderr)
        return 1
    finally:
        for client in (c.clients.values() if c else []):
            client.close()
        if daemon:
            daemon.stop()
        if args.keep:
            print(f"openapi_test: kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Failure as e:
        print(f"openapi_test: FAIL: {e}", file=sys.stderr)
        sys.exit(1)
