"""HTTP/1.1 over a Unix stream socket with the standard library: http.client with a connection
that dials AF_UNIX, and a small pool of kept-alive connections."""

from __future__ import annotations

import http.client
import select
import socket
import threading
from dataclasses import dataclass
from typing import Dict, List, Optional

from .errors import ConnectionFailed


class UnixHTTPConnection(http.client.HTTPConnection):
    """http.client's connection, dialling a Unix socket path instead of host:port."""

    def __init__(self, socket_path: str, timeout: float):
        # The Host header is required by HTTP/1.1; the daemon ignores its value.
        super().__init__("custody", timeout=timeout)
        self.socket_path = socket_path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.socket_path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


@dataclass
class RawResponse:
    status: int
    body: bytes
    request_id: Optional[str]
    retry_after: Optional[float]


def _peer_closed(conn: UnixHTTPConnection) -> bool:
    """True when an idle kept-alive connection can no longer carry a request: the daemon closed
    it (idle timeout, restart) or sent something unasked. Checked before reuse, so a request is
    never written into a connection that is already gone."""
    sock = conn.sock
    if sock is None:
        return True
    # poll, not recv: a socket with a timeout waits for data in recv even with MSG_DONTWAIT.
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    try:
        return bool(poller.poll(0))  # EOF, or an answer nobody asked for: either way not reusable
    except OSError:
        return True


def _retry_after(value: Optional[str]) -> Optional[float]:
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None  # an HTTP date: custodyd never sends one; treat as absent
    return seconds if seconds >= 0 else None


class ConnectionPool:
    """Kept-alive connections to one socket, each used by one thread at a time."""

    def __init__(self, socket_path: str, timeout: float, max_idle: int = 4):
        self.socket_path = socket_path
        self.timeout = timeout
        self.max_idle = max_idle
        self._idle: List[UnixHTTPConnection] = []
        self._lock = threading.Lock()

    def _take(self) -> UnixHTTPConnection:
        with self._lock:
            while self._idle:
                conn = self._idle.pop()
                if not _peer_closed(conn):
                    return conn
                conn.close()
        return UnixHTTPConnection(self.socket_path, self.timeout)

    def _give_back(self, conn: UnixHTTPConnection) -> None:
        with self._lock:
            if len(self._idle) < self.max_idle:
                self._idle.append(conn)
                return
        conn.close()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def send(self, method: str, path: str, body: Optional[bytes], headers: Dict[str, str]) -> RawResponse:
        """One request and its answer. ConnectionFailed.sent tells whether the request may have
        reached the daemon (False: the socket could not even be dialled)."""
        conn = self._take()
        sent = conn.sock is not None
        try:
            if conn.sock is None:
                conn.connect()
            sent = True
            try:
                conn.request(method, path, body=body, headers=headers)
            except (BrokenPipeError, ConnectionResetError):
                pass  # a daemon that refuses early (429, 413) answers before reading: read that answer
            response = conn.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException) as e:
            conn.close()
            if isinstance(e, socket.timeout):
                reason = f"no answer from {self.socket_path} within {self.timeout} s"
            elif not sent:
                reason = f"cannot connect to {self.socket_path}: {e} (is custodyd running? set CUSTODY_SERVICE_SOCKET)"
            else:
                reason = f"request to {self.socket_path} failed: {e!r}"
            failure = ConnectionFailed(reason)
            failure.sent = sent
            raise failure from e
        if response.will_close:
            conn.close()
        else:
            self._give_back(conn)
        return RawResponse(response.status, data, response.getheader("X-Request-Id"),
                           _retry_after(response.getheader("Retry-After")))
