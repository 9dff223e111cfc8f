"""Slow clients for tests/fuzz/test_slow_clients.py and scripts/fuzz_soak.py: many connections that hold a server
open without finishing a request, and what to measure while they do (latency, the server's memory and sockets).
"""
from __future__ import annotations

import base64
import hashlib
import http.client
import os
import resource
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from findface_grpc import launch

# How the connections of a crowd are split: half connect and send nothing, a tenth send whole headers announcing
# BODY_BYTES and then the body a byte at a time, the rest send their headers a byte at a time.
IDLE_SHARE = 0.5
BODY_SHARE = 0.1
BODY_BYTES = 1_000_000
# The photo store's user of the slow-client cases (`[upload] users`).
OPERATOR = "Basic " + base64.b64encode(b"operator:op-secret").decode()


def raise_fd_limit(need: int) -> None:
    """This process's soft open-file limit to at least `need` (up to the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (need if hard == resource.RLIM_INFINITY else min(need, hard), hard))


def rss_kb(pid: int) -> int:
    return launch.rss_bytes(pid) // 1024


def open_sockets(pid: int) -> int:
    """How many sockets `pid` has open."""
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            count += os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:")
        except OSError:
            pass
    return count


@dataclass
class Door:
    """A server the crowd holds: its address, and the starts of the requests its slow clients send."""

    host: str
    port: int
    # A request (line and headers, no body) sent a byte at a time.
    header_request: bytes
    # Whole headers announcing a body of BODY_BYTES, which then comes a byte at a time.
    body_head: bytes

    def connect(self, timeout: float = 10) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout)


def http_head(method: str, path: str, host: str, headers: dict[str, str] | None = None,
              length: int | None = None) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", *(f"{k}: {v}" for k, v in (headers or {}).items())]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def http_door(http_address: str, token: str) -> Door:
    """The HTTP gateway: its slow clients begin identify requests (with a token) announcing BODY_BYTES."""
    host, _, port = http_address.rpartition(":")
    auth = {"Authorization": f"Token {token}", "Content-Type": "multipart/form-data; boundary=x"}
    head = http_head("POST", "/v1/identify", host, auth, length=BODY_BYTES)
    return Door(host, int(port), head, head)


def store_door(listen: str) -> Door:
    """The photo store: its slow clients begin PUTs into the drop folder announcing BODY_BYTES."""
    host, _, port = listen.rpartition(":")
    head = http_head("PUT", "/dropbox/slow/held.jpg", host, {"Authorization": OPERATOR, "Content-Type": "image/jpeg"},
                     length=BODY_BYTES)
    return Door(host, int(port), head, head)


def start_store(base: Path, gateway_address: str, photo: bytes,
                start_timeout: float = 120) -> tuple[launch.ManagedProcess, str, str]:
    """A photo store in `base`, on the given gateway, with `photo` stored and the user OPERATOR; its process, its
    address and the stored photo's path."""
    sha = hashlib.sha256(photo).hexdigest()
    folder = base / "root" / "photos" / sha[:2]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{sha}.jpg").write_bytes(photo)
    listen = f"127.0.0.1:{launch.free_port()}"
    proc = launch.python_server("upload-slow", "gateway_http.upload",
                                ["--listen", listen, "--root", str(base / "root"), "--gateway", gateway_address],
                                base / "upload.log", env={"FINDFACE_UPLOAD_USERS": "operator:op-secret"})
    proc.start()
    try:
        launch.wait_tcp("127.0.0.1", int(listen.rpartition(":")[2]), start_timeout, proc)
    except BaseException:
        proc.stop()
        raise
    return proc, listen, f"/photos/{sha[:2]}/{sha}.jpg"


@dataclass
class SlowCrowd:
    """`count` connections to `door` that never finish a request while held (a context manager); a thread sends
    each dripping connection one more byte every `interval` seconds."""

    door: Door
    count: int
    interval: float = 1.0
    idle: list[socket.socket] = field(default_factory=list)
    headers: list[socket.socket] = field(default_factory=list)
    bodies: list[socket.socket] = field(default_factory=list)
    closed_by_server: int = 0

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._drip, name="slow-crowd", daemon=True)
        self._sent = 0

    def __enter__(self) -> "SlowCrowd":
        raise_fd_limit(self.count + 512)
        n_idle = int(self.count * IDLE_SHARE)
        n_body = int(self.count * BODY_SHARE)
        try:
            for i in range(self.count):
                sock = socket.create_connection((self.door.host, self.door.port), timeout=10)
                if i < n_idle:
                    self.idle.append(sock)
                elif i < n_idle + n_body:
                    sock.sendall(self.door.body_head)
                    self.bodies.append(sock)
                else:
                    self.headers.append(sock)
        except BaseException:
            self.close()
            raise
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _drip(self) -> None:
        while not self._stop.wait(self.interval):
            byte = self.door.header_request[self._sent % (len(self.door.header_request) - 4)]
            self._sent += 1
            for group, data in ((self.headers, bytes([byte])), (self.bodies, b"x")):
                for sock in list(group):
                    try:
                        sock.send(data)
                    except OSError:
                        group.remove(sock)
                        sock.close()
                        self.closed_by_server += 1

    def still_open(self) -> int:
        """How many of the crowd's connections the server has not closed."""
        open_ = 0
        for sock in (*self.idle, *self.headers, *self.bodies):
            sock.setblocking(False)
            try:
                sock.recv(1, socket.MSG_PEEK)  # an answer, or the end: the server is done with it
            except BlockingIOError:
                open_ += 1
            except OSError:
                pass
            finally:
                sock.setblocking(True)
        return open_

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        for sock in (*self.idle, *self.headers, *self.bodies):
            sock.close()
        self.idle, self.headers, self.bodies = [], [], []


def timed(probe) -> tuple[float, object]:
    """Seconds `probe()` took, and what it returned."""
    started = time.perf_counter()
    result = probe()
    return time.perf_counter() - started, result


def fresh_request(door: Door, method: str, path: str, body: bytes | None = None,
                  headers: dict[str, str] | None = None, timeout: float = 10) -> tuple[int, bytes]:
    """One request on a new connection: what a client arriving among the slow ones gets (status, body)."""
    conn = door.connect(timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        reply = conn.getresponse()
        return reply.status, reply.read()
    finally:
        conn.close()


def slow_request(door: Door, head: bytes, body: bytes, slow_bytes: int, seconds: float,
                 timeout: float = 30) -> socket.socket:
    """Sends `head` and the first `slow_bytes` of `body` spread over `seconds`; returns the socket, for
    finish_request."""
    sock = socket.create_connection((door.host, door.port), timeout=timeout)
    sock.sendall(head)
    steps = 20
    piece = max(1, slow_bytes // steps)
    for start in range(0, slow_bytes, piece):
        sock.sendall(body[start:min(start + piece, slow_bytes)])
        time.sleep(seconds / steps)
    return sock


def finish_request(sock: socket.socket, rest: bytes) -> int:
    """Sends the rest of a slow request's body; the answer's status."""
    with sock:
        sock.sendall(rest)
        reply = http.client.HTTPResponse(sock)
        reply.begin()
        reply.read()
        return reply.status
