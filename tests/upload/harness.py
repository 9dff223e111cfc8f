"""A real cluster with findface-upload in front of it, and a WebDAV client speaking plain HTTP, for tests/upload.

Shards, a gateway and `python -m gateway_http.upload` as subprocesses on 127.0.0.1 (the gateway tests' pieces);
the gateway stores photos and crops in the upload server, which enrolls drops through the gateway, both with the
same API token, the store's service identity; clients (`dav()`) use another, ordinary token. Requests go over
real HTTP with http.client, so what is tested is what a WebDAV client sees.
"""
from __future__ import annotations

import base64
import http.client
import json
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from findface_grpc import launch
from tests.gateway.harness import (
    HOST, START_TIMEOUT, ShardSet, address, face_stub, gateway_process, make_token, start_healthy,
)

CELLS = 8


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    raw: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.raw)


class DavClient:
    """One request per connection, so that every test sees exactly what it sent."""

    def __init__(self, address: str, user: str = "", password: str = "") -> None:
        self.host, _, port = address.rpartition(":")
        self.port = int(port)
        self.auth = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode() if user or password else ""

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None,
                auth: bool = True) -> Reply:
        hdrs = dict(headers or {})
        if auth and self.auth:
            hdrs.setdefault("Authorization", self.auth)
        conn = http.client.HTTPConnection(self.host, self.port, timeout=120)
        try:
            # skip_host off, but the path goes out exactly as given (no normalisation of "..").
            conn.putrequest(method, path, skip_accept_encoding=True)
            for k, v in hdrs.items():
                conn.putheader(k, v)
            if body is not None or method == "PUT":
                conn.putheader("Content-Length", str(len(body or b"")))
            conn.endheaders(body)
            reply = conn.getresponse()
            return Reply(reply.status, {k.lower(): v for k, v in reply.getheaders()}, reply.read())
        finally:
            conn.close()

    def get(self, url_or_path: str, auth: bool = True) -> Reply:
        return self.request("GET", urlsplit(url_or_path).path, auth=auth)

    def put(self, path: str, body: bytes, **kw) -> Reply:
        return self.request("PUT", path, body, **kw)

    def propfind(self, path: str, depth: str = "1") -> Reply:
        return self.request("PROPFIND", path, headers={"Depth": depth})

    def move(self, path: str, destination: str) -> Reply:
        return self.request("MOVE", path, headers={"Destination": f"http://{self.host}:{self.port}{destination}"})

    def delete(self, path: str) -> Reply:
        return self.request("DELETE", path)

    def announce_put(self, path: str, length: int) -> int:
        """The status of a PUT announcing `length` bytes, answered before any of them is sent."""
        with socket.create_connection((self.host, self.port), timeout=10) as sock:
            sock.sendall((f"PUT {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nAuthorization: {self.auth}\r\n"
                          f"Content-Length: {length}\r\n\r\n").encode())
            return int(sock.recv(4096).split(b" ", 2)[1])

    def interrupted_put(self, path: str, body: bytes, sent: int) -> None:
        """A PUT announcing all of `body` whose connection closes after `sent` bytes of it."""
        with socket.create_connection((self.host, self.port), timeout=10) as sock:
            head = (f"PUT {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nAuthorization: {self.auth}\r\n"
                    f"Content-Length: {len(body)}\r\nContent-Type: image/jpeg\r\n\r\n")
            sock.sendall(head.encode() + body[:sent])


@dataclass
class UploadCluster:
    base: Path
    name: str
    mongo_uri: str
    extractor: str
    shard_count: int = 2

    def __post_init__(self) -> None:
        self.base = self.base / self.name
        self.mongo_db = f"upload_{self.name}"
        self.root = self.base / "store"
        self.shards = ShardSet(self.base, self.shard_count)
        self.gateway_address = address(launch.free_port())
        self.upload_address = address(launch.free_port())
        self.store_url = f"http://{self.upload_address}"
        self.token = ""
        self.user_token = ""
        self.channel = None
        self.stub = None
        self.gateway = None
        self.upload = None

    def start(self) -> "UploadCluster":
        try:
            self.token = make_token(self.mongo_uri, self.mongo_db, "upload")
            self.user_token = make_token(self.mongo_uri, self.mongo_db, "alice")
            self.shards.start_tarantools()
            start_healthy(self.shards.server_items())
            self.gateway = gateway_process(
                f"gateway-{self.name}", self.base, self.gateway_address, self.shards.addresses, self.extractor,
                self.mongo_uri, self.mongo_db, cells=CELLS, upload_url=self.store_url, upload_password=self.token,
            )
            self.upload = self.upload_process(f"upload-{self.name}", self.upload_address, self.root)
            self.upload.start()
            start_healthy([(self.gateway, self.gateway_address)])
            launch.wait_tcp(HOST, int(self.upload_address.rpartition(":")[2]), START_TIMEOUT, self.upload)
            self.channel, self.stub = face_stub(self.gateway_address, self.token)
        except BaseException:
            self.stop()
            raise
        return self

    def upload_process(self, name: str, listen: str, root: Path, gateway: str = "", **settings) -> launch.ManagedProcess:
        env = {"FINDFACE_UPLOAD_MONGO_DB": self.mongo_db, "FINDFACE_UPLOAD_GATEWAY_TOKEN": self.token,
               "FINDFACE_UPLOAD_USERS": "operator:op-secret"}
        env.update({f"FINDFACE_UPLOAD_{k.upper()}": str(v) for k, v in settings.items()})
        return launch.python_server(
            name, "gateway_http.upload",
            ["--listen", listen, "--root", str(root), "--gateway", gateway or self.gateway_address,
             "--mongo-uri", self.mongo_uri],
            self.base / f"{name}.log", env=env,
        )

    def dav(self, user: str = "any", password: str | None = None) -> DavClient:
        """A client with an ordinary API token (the drop folder is theirs), or the given credentials."""
        return DavClient(self.upload_address, user, self.user_token if password is None else password)

    def service_dav(self, user: str = "gateway") -> DavClient:
        """A client with the store's service identity: the token the gateway writes photos and crops with."""
        return DavClient(self.upload_address, user, self.token)

    def log(self) -> str:
        return self.upload.tail(60) if self.upload else ""

    def stop(self) -> None:
        if self.channel is not None:
            self.channel.close()
        for proc in (self.upload, self.gateway):
            if proc is not None:
                proc.stop()
        self.shards.stop()
