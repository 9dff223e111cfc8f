"""Slow clients against the HTTP gateway and the photo store (issue 12, item 16).

500 connections held open without ever finishing a request (half connected and silent, the rest sending their
headers, or a 1 MB body, a byte a second) must leave both servers answering everyone else within 1 s: /health and
a real identify on the HTTP gateway, a public photo read and a drop-folder upload on the store. A valid upload
sent slowly is answered once whole and holds nobody up meanwhile. Beyond `max_connections` a connection is
answered 503 at once, and a client too slow with its headers or body gets 408 at its deadline.
"""
from __future__ import annotations

import itertools
import json
import socket
import time

import pytest

from findface_grpc import launch
from tests.fuzz import slow
from tests.fuzz.slow import (
    BODY_BYTES, OPERATOR, Door, SlowCrowd, finish_request, fresh_request, http_head, open_sockets, rss_kb,
    slow_request, timed,
)
from tests.gateway.harness import START_TIMEOUT, address
from tests.http.harness import multipart

CROWD = 500
HOLD_S = 4.0
PROBES = 5
WITHIN_S = 1.0


@pytest.fixture(scope="module")
def photo(photos) -> bytes:
    return photos["deepface/img1.jpg"][1]


@pytest.fixture(scope="module")
def http_door(cluster) -> Door:
    return slow.http_door(cluster.http_address, cluster.token)


@pytest.fixture(scope="module")
def store(cluster, tmp_path_factory, photo):
    """The photo store, on the HTTP tests' cluster's gateway, with one stored photo and an operator user."""
    proc, listen, photo_path = slow.start_store(tmp_path_factory.mktemp("store"), cluster.gateway_address, photo)
    yield proc, listen, photo_path
    proc.stop()


@pytest.fixture(scope="module")
def store_door(store) -> Door:
    return slow.store_door(store[1])


def http_probes(door: Door, photo: bytes, token: str):
    body, ctype = multipart({}, {"photo": ("a.jpg", photo)})
    auth = {"Authorization": f"Token {token}"}
    return {
        "health": lambda: fresh_request(door, "GET", "/health"),
        "identify": lambda: fresh_request(door, "POST", "/v1/identify", body, {**auth, "Content-Type": ctype}),
    }


DROPS = itertools.count()


def store_probes(door: Door, photo_path: str, photo: bytes):
    counter = DROPS
    return {
        "public read": lambda: fresh_request(door, "GET", photo_path),
        "drop": lambda: fresh_request(door, "PUT", f"/dropbox/probe/p{next(counter)}.jpg", photo,
                                      {"Authorization": OPERATOR, "Content-Type": "image/jpeg"}),
    }


def measure(probes: dict, expected: dict[str, int], rounds: int = PROBES) -> dict[str, list[float]]:
    """Each probe `rounds` times: the seconds each took; every answer must have its expected status."""
    times: dict[str, list[float]] = {name: [] for name in probes}
    for _ in range(rounds):
        for name, probe in probes.items():
            seconds, (status, data) = timed(probe)
            assert status == expected[name], (name, status, data[:300])
            times[name].append(seconds)
    return times


def report(label: str, times: dict[str, list[float]]) -> str:
    return f"{label}: " + ", ".join(f"{name} max {max(t) * 1000:.0f} ms (median {sorted(t)[len(t) // 2] * 1000:.0f})"
                                    for name, t in times.items())


def held(pid: int, crowd: SlowCrowd, before: int) -> None:
    """The server holds the crowd's connections open: none was closed, and its process has their sockets."""
    assert crowd.closed_by_server == 0
    assert crowd.still_open() == crowd.count
    assert open_sockets(pid) >= max(before - 2, 0) + crowd.count


def test_500_slow_connections_leave_the_http_gateway_answering(cluster, http_door, photo):
    probes = http_probes(http_door, photo, cluster.token)
    expected = {"health": 200, "identify": 200}
    pid = cluster.http.proc.pid
    measure(probes, expected, 1)  # warm
    quiet = measure(probes, expected)
    sockets, rss_before = open_sockets(pid), rss_kb(pid)
    with SlowCrowd(http_door, CROWD) as crowd:
        time.sleep(HOLD_S / 2)
        busy = measure(probes, expected)
        held(pid, crowd, sockets)
        rss_held = rss_kb(pid)
    print(f"\n{report('HTTP gateway, quiet', quiet)}\n{report(f'HTTP gateway, {CROWD} slow connections', busy)}"
          f"\nRSS {rss_before / 1024:.0f} MB before, {rss_held / 1024:.0f} MB holding them")
    assert all(t < WITHIN_S for ts in busy.values() for t in ts), busy
    assert rss_held < rss_before + 100 * 1024  # each held connection costs little (no thread)
    # Closed, they are forgotten, and the server goes on.
    deadline = time.monotonic() + 10
    while open_sockets(pid) > sockets + 5 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert open_sockets(pid) <= sockets + 5
    measure(probes, expected, 2)
    assert cluster.http.alive and cluster.http.proc.pid == pid


def test_500_slow_connections_leave_the_photo_store_answering(store, store_door, photo):
    proc, _, photo_path = store
    probes = store_probes(store_door, photo_path, photo)
    expected = {"public read": 200, "drop": 201}
    pid = proc.proc.pid
    measure(probes, expected, 1)
    quiet = measure(probes, expected)
    sockets = open_sockets(pid)
    with SlowCrowd(store_door, CROWD) as crowd:
        time.sleep(HOLD_S / 2)
        busy = measure(probes, expected)
        held(pid, crowd, sockets)
    print(f"\n{report('photo store, quiet', quiet)}\n{report(f'photo store, {CROWD} slow connections', busy)}")
    assert all(t < WITHIN_S for ts in busy.values() for t in ts), busy
    measure(probes, expected, 2)
    assert proc.alive and proc.proc.pid == pid
    # The uploads held were cut off when their clients left: discarded, never kept.
    deadline = time.monotonic() + 5
    while "incomplete upload of /dropbox/slow/held.jpg discarded" not in proc.tail(400) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "incomplete upload of /dropbox/slow/held.jpg discarded" in proc.tail(400)
    assert fresh_request(store_door, "GET", "/dropbox/slow/held.jpg", headers={"Authorization": OPERATOR})[0] == 404


def test_a_slow_upload_is_answered_once_whole_and_holds_nobody_up(cluster, http_door, store, store_door, photo,
                                                                  photos):
    """A 1 MB identify (the smallest photo and a form field to pad it) and a 1 MB drop, each sent slowly."""
    small = min((data for _, data in photos.values()), key=len)
    body, ctype = multipart({"pad": "p" * max(0, BODY_BYTES - len(small) - 400)}, {"photo": ("a.jpg", small)})
    head = http_head("POST", "/v1/identify", http_door.host,
                     {"Authorization": f"Token {cluster.token}", "Content-Type": ctype}, length=len(body))
    _, _, photo_path = store
    name = f"/dropbox/slow/whole{next(DROPS)}.jpg"  # a new file (201) each time, as the soak repeats this
    put_head = http_head("PUT", name, store_door.host,
                         {"Authorization": OPERATOR, "Content-Type": "image/jpeg"}, length=BODY_BYTES)
    upload = small + b"\0" * (BODY_BYTES - len(small))
    slow_http = slow_request(http_door, head, body, 64 * 1024, 2.0)
    slow_store = slow_request(store_door, put_head, upload, 64 * 1024, 2.0)
    # Meanwhile, everyone else is answered at once.
    busy = measure({**http_probes(http_door, photo, cluster.token), **store_probes(store_door, photo_path, photo)},
                   {"health": 200, "identify": 200, "public read": 200, "drop": 201}, 2)
    assert all(t < WITHIN_S for ts in busy.values() for t in ts), busy
    # And the slow ones, once whole, are answered as any other.
    assert finish_request(slow_http, body[64 * 1024:]) == 200
    assert finish_request(slow_store, upload[64 * 1024:]) == 201
    assert fresh_request(store_door, "GET", name, headers={"Authorization": OPERATOR}) == (200, upload)


@pytest.fixture(scope="module")
def tight(cluster, tmp_path_factory):
    """An HTTP gateway with 40 connections at most and short deadlines (2 s for headers, 4 s in all)."""
    base = tmp_path_factory.mktemp("tight")
    listen = address(launch.free_port())
    proc = launch.python_server("http-tight", "gateway_http.server",
                                ["--listen", listen, "--gateway", cluster.gateway_address], base / "http.log",
                                env={"FINDFACE_HTTP_MAX_CONNECTIONS": "40", "FINDFACE_HTTP_HEADER_TIMEOUT_S": "2",
                                     "FINDFACE_HTTP_REQUEST_TIMEOUT_S": "4"})
    proc.start()
    launch.wait_http_ok(listen, "/health", START_TIMEOUT, proc)
    host, _, port = listen.rpartition(":")
    yield proc, Door(host, int(port), b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n", b"")
    proc.stop()


def read_answer(sock: socket.socket, timeout: float) -> tuple[int, dict, bytes]:
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"closed without an answer: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    while len(body) < int(headers.get("content-length", 0)):
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(lines[0].split()[1]), headers, body


def test_beyond_max_connections_a_connection_is_refused_at_once(tight):
    proc, door = tight
    crowd = [socket.create_connection((door.host, door.port), timeout=10) for _ in range(40)]
    try:
        time.sleep(0.5)
        for _ in range(3):
            with socket.create_connection((door.host, door.port), timeout=10) as extra:
                started = time.perf_counter()
                status, headers, body = read_answer(extra, 5)
                assert time.perf_counter() - started < WITHIN_S
                assert status == 503 and headers["retry-after"] == "1", (status, headers)
                assert json.loads(body)["code"] == "SERVICE_UNAVAILABLE"
    finally:
        for sock in crowd:
            sock.close()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            if fresh_request(door, "GET", "/health")[0] == 200:
                break
        except (ConnectionError, OSError):
            pass
        time.sleep(0.1)
    assert fresh_request(door, "GET", "/health")[0] == 200
    assert "connections open (max_connections)" in proc.tail(100)


def test_headers_and_bodies_too_slow_get_408_at_their_deadline(tight):
    _, door = tight
    with socket.create_connection((door.host, door.port), timeout=10) as dripping, \
            socket.create_connection((door.host, door.port), timeout=10) as slow_body:
        started = time.monotonic()
        slow_body.sendall(b"POST /v1/detect HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n")
        for byte in b"GET /health HTTP/1.1\r\n":
            try:
                dripping.send(bytes([byte]))
                slow_body.send(b"x")
            except OSError:
                break
            time.sleep(0.25)
        status, _, body = read_answer(dripping, 10)
        assert status == 408 and json.loads(body)["code"] == "REQUEST_TIMEOUT", body
        assert 2 <= time.monotonic() - started < 5
        status, _, body = read_answer(slow_body, 10)
        assert status == 408 and json.loads(body)["code"] == "REQUEST_TIMEOUT", body
        assert 4 <= time.monotonic() - started < 7
    assert fresh_request(door, "GET", "/health")[0] == 200


def test_an_oversized_body_is_answered_413_from_its_headers(cluster, http_door, store_door):
    """Refused without being read: the answer comes before the client sends any of it."""
    for door, head, expected in (
        (http_door, http_head("POST", "/v1/detect", http_door.host, {"Authorization": f"Token {cluster.token}"},
                              length=50_000_000), b"BODY_TOO_LARGE"),
        (store_door, http_head("PUT", "/dropbox/big/x.jpg", store_door.host, {"Authorization": OPERATOR},
                               length=50_000_000), b"limited to 10 MB"),
    ):
        with socket.create_connection((door.host, door.port), timeout=10) as sock:
            sock.sendall(head)
            status, headers, body = read_answer(sock, 5)
            assert status == 413 and expected in body and headers["connection"] == "close", (status, headers, body)
