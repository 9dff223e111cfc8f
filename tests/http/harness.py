"""A real cluster with its HTTP gateway, a plain HTTP client, and a photo server on loopback, for tests/http.

The cluster is the gateway tests' (tests/gateway/harness.py): SecantusDB, Tarantools with shard servers, the
extractor and a gateway as subprocesses on 127.0.0.1, plus `python -m gateway_http.server` in front. Requests go
over real HTTP with http.client, never through a framework's test client, so that what is tested is what a
client on the network sees.
"""
from __future__ import annotations

import http.client
import http.server
import json
import secrets
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from findface_grpc import launch
from tests.gateway.harness import HOST, START_TIMEOUT, ShardSet, address, gateway_process, make_token, start_healthy

CELLS = 8


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    raw: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.raw) if self.raw else None

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


def multipart(fields: dict[str, Any], files: dict[str, tuple[str, bytes]]) -> tuple[bytes, str]:
    """A multipart/form-data body as curl -F builds it; list values become repeated fields."""
    boundary = "----findface" + secrets.token_hex(8)
    out = bytearray()
    for name, value in fields.items():
        for item in value if isinstance(value, list) else [value]:
            out += f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
            out += str(item).encode() + b"\r\n"
    for name, (filename, data) in files.items():
        out += (f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                f"Content-Type: application/octet-stream\r\n\r\n").encode()
        out += data + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return bytes(out), f"multipart/form-data; boundary={boundary}"


class HttpClient:
    """One keep-alive connection to the HTTP gateway, reopened when the server closes it."""

    def __init__(self, address: str, token: str | None) -> None:
        self.host, _, port = address.rpartition(":")
        self.port = int(port)
        self.token = token
        self.conn: http.client.HTTPConnection | None = None

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def request(self, method: str, path: str, *, json_body: Any = None, form: dict | None = None,
                files: dict[str, tuple[str, bytes]] | None = None, body: bytes | None = None,
                query: dict | None = None, headers: dict[str, str] | None = None, token: str | None | bool = True,
                timeout: float = 120.0) -> Reply:
        hdrs = dict(headers or {})
        if token is True and self.token:
            hdrs.setdefault("Authorization", f"Token {self.token}")
        elif isinstance(token, str):
            hdrs["Authorization"] = token
        if query:
            path += ("&" if "?" in path else "?") + urllib.parse.urlencode(query, doseq=True)
        if json_body is not None:
            body = json.dumps(json_body).encode()
            hdrs.setdefault("Content-Type", "application/json")
        elif files is not None:
            body, hdrs["Content-Type"] = multipart(form or {}, files)
        elif form is not None:
            body = urllib.parse.urlencode(form, doseq=True).encode()
            hdrs.setdefault("Content-Type", "application/x-www-form-urlencoded")
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
            try:
                self.conn.request(method, path, body=body, headers=hdrs)
                reply = self.conn.getresponse()
                raw = reply.read()
            except (ConnectionError, http.client.RemoteDisconnected, http.client.CannotSendRequest,
                    BrokenPipeError):
                self.close()
                if attempt:
                    raise
                continue
            headers_out = {k.lower(): v for k, v in reply.getheaders()}
            if headers_out.get("connection", "").lower() == "close":
                self.close()
            return Reply(reply.status, headers_out, raw)
        raise AssertionError("unreachable")

    def get(self, path: str, **kw) -> Reply:
        return self.request("GET", path, **kw)

    def post(self, path: str, **kw) -> Reply:
        return self.request("POST", path, **kw)


class PhotoHandler(http.server.BaseHTTPRequestHandler):
    """Serves the labelled photos by path, and a few misbehaving URLs for the fetch's fences."""

    root: Path
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # quiet: pytest shows failures, not every fetch
        pass

    def _send(self, status: int, body: bytes = b"", headers: dict | None = None) -> None:
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        path = urllib.parse.unquote(self.path.split("?", 1)[0]).lstrip("/")
        if path.startswith("redirect/"):
            self._send(302, headers={"Location": "/" + path.removeprefix("redirect/")})
        elif path == "big.jpg":
            self._send(200, b"\xff\xd8" + b"\0" * 11_000_000, {"Content-Type": "image/jpeg"})
        elif path == "slow.jpg":
            time.sleep(5)
            self._send(200, b"late")
        elif path == "text.html":
            self._send(200, b"<html>not a photo</html>", {"Content-Type": "text/html"})
        else:
            file = (self.root / path).resolve()
            if self.root.resolve() in file.parents and file.is_file():
                self._send(200, file.read_bytes(), {"Content-Type": "image/jpeg"})
            else:
                self._send(404, b"no such photo")


class PhotoServer:
    def __init__(self, root: Path) -> None:
        handler = type("Handler", (PhotoHandler,), {"root": root})
        self.server = http.server.ThreadingHTTPServer((HOST, 0), handler)
        self.server.daemon_threads = True
        self.base = f"http://{HOST}:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"{self.base}/{urllib.parse.quote(path)}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class HttpCluster:
    """Shards, a gateway and the HTTP gateway in front of it, sharing a test package's MongoDB and extractor."""

    base: Path
    name: str
    mongo_uri: str
    extractor: str
    shard_count: int = 2
    gateway_settings: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.base = self.base / self.name
        self.mongo_db = f"http_{self.name}"
        self.shards = ShardSet(self.base, self.shard_count)
        self.gateway_address = address(launch.free_port())
        self.http_address = address(launch.free_port())
        self.gateway = self._gateway()
        self.http = self._http()
        self.token = ""
        self.client: HttpClient | None = None

    def _gateway(self) -> launch.ManagedProcess:
        settings = {"cells": CELLS, "url_allow_networks": "127.0.0.0/8", "url_fetch_timeout_s": 2,
                    **self.gateway_settings}
        return gateway_process(f"gateway-{self.name}", self.base, self.gateway_address, self.shards.addresses,
                               self.extractor, self.mongo_uri, self.mongo_db, **settings)

    def _http(self) -> launch.ManagedProcess:
        return launch.python_server(f"http-{self.name}", "gateway_http.server",
                                    ["--listen", self.http_address, "--gateway", self.gateway_address],
                                    self.base / f"http-{self.name}.log")

    def start(self) -> "HttpCluster":
        try:
            self.shards.start_tarantools()
            start_healthy(self.shards.server_items())
            start_healthy([(self.gateway, self.gateway_address)])
            self.start_http()
            self.token = make_token(self.mongo_uri, self.mongo_db, "http-tests")
            self.client = HttpClient(self.http_address, self.token)
        except BaseException:
            self.stop()
            raise
        return self

    def start_http(self) -> None:
        if not self.http.alive:
            self.http = self._http()
        self.http.start()
        launch.wait_http_ok(self.http_address, "/health", START_TIMEOUT, self.http)

    def restart_gateway(self) -> None:
        self.gateway.stop()
        self.gateway = self._gateway()
        start_healthy([(self.gateway, self.gateway_address)])

    def stop(self) -> None:
        if self.client is not None:
            self.client.close()
        for proc in (self.http, self.gateway):
            proc.stop()
        self.shards.stop()
