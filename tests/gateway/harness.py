"""Real processes for the gateway's tests: SecantusDB, Tarantools with shard servers, the extractor, gateways.

Everything runs on 127.0.0.1 with free ports, started through findface_grpc.launch exactly as the cluster
launcher starts it; processes that do not depend on each other are started side by side.
"""
from __future__ import annotations

import asyncio
from contextlib import contextmanager
import secrets
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import numpy as np
import pymongo

from findface_grpc import launch
from findface_grpc.auth import TokenStore
from findface_grpc.gateway.domain import Descriptor, NewFace
from findface_grpc.rpc import CHANNEL_OPTIONS
from findface_grpc.v1 import gateway_pb2_grpc, shard_pb2, shard_pb2_grpc
from tests.helpers import with_token

START_TIMEOUT = 120.0
HOST = "127.0.0.1"


def address(port: int) -> str:
    return f"{HOST}:{port}"


def start_healthy(items: list[tuple[launch.ManagedProcess, str]]) -> None:
    """Start the processes at once, then wait until every one answers health checks."""
    for proc, _ in items:
        proc.start()
    if not items:
        return
    with ThreadPoolExecutor(len(items)) as pool:
        futures = [pool.submit(launch.wait_grpc_healthy, addr, START_TIMEOUT, proc) for proc, addr in items]
        errors = []
        for fut in futures:
            try:
                fut.result()
            except Exception as exc:  # noqa: BLE001 - report every process that failed, with its log
                errors.append(exc)
    if errors:
        for proc, _ in items:
            proc.stop()
        raise RuntimeError("\n".join(f"{e}" for e in errors) + "\n" + "\n".join(p.tail() for p, _ in items))


@dataclass
class ShardSet:
    """N shards, each a Tarantool plus a shard server."""

    base: Path
    count: int
    tarantools: list[launch.ManagedProcess] = field(default_factory=list)
    servers: list[launch.ManagedProcess] = field(default_factory=list)
    tt_ports: list[int] = field(default_factory=list)
    addresses: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.tt_ports = [launch.free_port() for _ in range(self.count)]
        self.addresses = [address(launch.free_port()) for _ in range(self.count)]
        self.tarantools = [
            launch.tarantool_process(self.base / f"shard-{i}", port, 256, name=f"tarantool-{i}")
            for i, port in enumerate(self.tt_ports)
        ]
        self.servers = [self._server(i) for i in range(self.count)]

    def _server(self, i: int) -> launch.ManagedProcess:
        return launch.python_server(
            f"shard-{i}",
            "findface_grpc.shard.server",
            ["--listen", self.addresses[i], "--tarantool", address(self.tt_ports[i]), "--shard-id", f"shard-{i}"],
            self.base / f"shard-{i}" / "server.log",
        )

    def start_tarantools(self) -> None:
        for tt in self.tarantools:
            tt.start()
        for tt, port in zip(self.tarantools, self.tt_ports):
            launch.wait_tcp(HOST, port, START_TIMEOUT, tt)

    def server_items(self, which: list[int] | None = None) -> list[tuple[launch.ManagedProcess, str]]:
        which = range(self.count) if which is None else which
        for i in which:
            if not self.servers[i].alive:
                self.servers[i] = self._server(i)
        return [(self.servers[i], self.addresses[i]) for i in which]

    def kill(self, i: int) -> None:
        """kill -9 one shard server (its Tarantool keeps the data)."""
        self.servers[i].kill()

    def stop_servers(self) -> None:
        for s in self.servers:
            s.stop()

    def stop(self) -> None:
        self.stop_servers()
        for tt in self.tarantools:
            tt.stop()

    # Direct reads of the shards, for checking what the gateway wrote.

    def ids(self, i: int) -> list[int]:
        with grpc.insecure_channel(self.addresses[i], options=CHANNEL_OPTIONS) as ch:
            stub = shard_pb2_grpc.ShardStub(ch)
            out, after = [], 0
            while ids := list(stub.ListIds(shard_pb2.ListIdsRequest(after_id=after, limit=10000), timeout=10).ids):
                out.extend(ids)
                after = ids[-1]
            return out

    def get(self, i: int, ids: list[int]) -> dict[int, tuple[str, ...]]:
        """Face id -> its galleries on shard i."""
        with grpc.insecure_channel(self.addresses[i], options=CHANNEL_OPTIONS) as ch:
            reply = shard_pb2_grpc.ShardStub(ch).Get(shard_pb2.GetRequest(ids=ids), timeout=10)
            return {f.id: tuple(sorted(f.galleries)) for f in reply.faces}


@contextmanager
def mongo_server(base: Path):
    """A SecantusDB in `base` on a free port, for as long as the block runs; yields its URI."""
    port = launch.free_port()
    proc = launch.mongo_process(base / "data", port).start()
    try:
        launch.wait_tcp(HOST, port, START_TIMEOUT, proc)
        yield f"mongodb://{address(port)}/?directConnection=true"
    finally:
        proc.stop()


# An extractor that embeds only faces of this size or more while Detect still reports them from 20 px, so that a
# face can be found yet be too small to use: with the defaults (both 20 px) no such face exists.
STRICT_MIN_FACE_SIZE = 40


def extractor_process(name: str, base: Path, listen: str, pack: str, **settings) -> launch.ManagedProcess:
    """An extractor server; `settings` are [extractor] settings, given as FINDFACE_EXTRACTOR_* variables."""
    env = {f"FINDFACE_EXTRACTOR_{k.upper()}": str(v) for k, v in settings.items()}
    return launch.python_server(name, "findface_grpc.extractor.server", ["--listen", listen, "--model-pack", pack],
                                base / f"{name}.log", env=env)


@contextmanager
def running_extractor(base: Path, pack: str):
    """A real extractor of `pack`, healthy; yields its address."""
    addr = address(launch.free_port())
    proc = extractor_process("extractor", base, addr, pack)
    start_healthy([(proc, addr)])
    try:
        yield addr
    finally:
        proc.stop()


@contextmanager
def running_strict_extractor(work_dir: Path, pack: str):
    """An extractor that embeds faces from STRICT_MIN_FACE_SIZE (40 px) while it finds them from 20 px, so that a
    face can be found yet left out as too small: with the defaults (both 20 px) none is."""
    addr = address(launch.free_port())
    proc = extractor_process("extractor-strict", work_dir, addr, pack, min_face_size=STRICT_MIN_FACE_SIZE)
    start_healthy([(proc, addr)])
    try:
        yield addr
    finally:
        proc.stop()


def gateway_process(name: str, base: Path, listen: str, shards: list[str], extractor: str, mongo_uri: str,
                    mongo_db: str, **settings) -> launch.ManagedProcess:
    env = {"FINDFACE_GATEWAY_MONGO_DB": mongo_db}
    env.update({f"FINDFACE_GATEWAY_{k.upper()}": str(v) for k, v in settings.items()})
    return launch.python_server(
        name,
        "findface_grpc.gateway.server",
        ["--listen", listen, "--extractor", extractor, "--shards", ",".join(shards), "--mongo-uri", mongo_uri],
        base / f"{name}.log",
        env=env,
    )


def make_token(mongo_uri: str, mongo_db: str, name: str = "tests") -> str:
    """A new API token in a gateway's metadata database (the gateway requires one on every call)."""
    client = pymongo.MongoClient(mongo_uri, tz_aware=True)
    try:
        return TokenStore(client[mongo_db]).create(f"{name}-{secrets.token_hex(4)}")
    finally:
        client.close()


def face_stub(addr: str, token: str) -> tuple[grpc.Channel, gateway_pb2_grpc.FaceServiceStub]:
    channel = with_token(grpc.insecure_channel(addr, options=CHANNEL_OPTIONS), token)
    return channel, gateway_pb2_grpc.FaceServiceStub(channel)


class Cluster:
    """A gateway in front of its own shards, sharing an extractor and a MongoDB-protocol server (its own database
    in it) with other clusters; with `cells` 8, consecutive ids spread over every shard."""

    def __init__(self, base: Path, name: str, shards: int, extractor: str, mongo: str, cells: int = 8) -> None:
        self.base = base / name
        self.shards = ShardSet(self.base, shards)
        self.address = address(launch.free_port())
        self.extractor, self.mongo, self.name, self.cells = extractor, mongo, name, cells
        self.gateway = self._gateway()
        self.channel, self.stub = face_stub(self.address, make_token(mongo, f"cluster_{name}"))

    def start(self) -> "Cluster":
        """Start its Tarantools, shard servers and gateway, each healthy; on a failure stop what started."""
        try:
            self.shards.start_tarantools()
            start_healthy(self.shards.server_items())
            start_healthy([(self.gateway, self.address)])
        except BaseException:
            self.stop()
            raise
        return self

    def _gateway(self) -> launch.ManagedProcess:
        return gateway_process(f"gateway-{self.name}", self.base, self.address, self.shards.addresses, self.extractor,
                               self.mongo, f"cluster_{self.name}", cells=self.cells)

    def restart(self) -> None:
        """Stop the gateway and the shard servers (their Tarantools keep running), then start them again."""
        self.gateway.stop()
        self.shards.stop_servers()
        start_healthy(self.shards.server_items())
        self.gateway = self._gateway()
        start_healthy([(self.gateway, self.address)])

    def stop(self) -> None:
        self.channel.close()
        self.gateway.stop()
        self.shards.stop()


class EventLoop:
    """Runs coroutines on one event loop, for driving an in-process GatewayService from synchronous tests."""

    def __init__(self) -> None:
        self.runner = asyncio.Runner()

    def run(self, coro):
        return self.runner.run(coro)

    def close(self) -> None:
        self.runner.close()


def new_face(meta: str = "", galleries: tuple[str, ...] = ("default",)) -> NewFace:
    """A face to insert into the metadata: its descriptor does not matter there."""
    return NewFace(Descriptor("m", np.zeros(4, np.float32)), tuple(galleries), meta=meta, bbox=(1, 2, 3, 4))
