"""Real processes for the shard tests: a Tarantool running storage.lua and the shard server, on free ports."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest

from findface_grpc import launch
from findface_grpc.rpc import CHANNEL_OPTIONS
from findface_grpc.v1 import shard_pb2_grpc

HOST = "127.0.0.1"


@dataclass
class ShardProcesses:
    """One shard: its Tarantool and its server, each of which a test may stop, kill and start again."""

    root: Path
    shard_id: str = "shard-0"
    extra_args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    memtx_mb: int = 256
    tarantool_port: int = field(default_factory=launch.free_port)
    shard_port: int = field(default_factory=launch.free_port)
    tarantool: launch.ManagedProcess | None = None
    server: launch.ManagedProcess | None = None

    @property
    def address(self) -> str:
        return f"{HOST}:{self.shard_port}"

    def start_tarantool(self) -> None:
        self.tarantool = launch.tarantool_process(self.root / "tarantool", self.tarantool_port, self.memtx_mb).start()
        launch.wait_tcp(HOST, self.tarantool_port, 30, self.tarantool)

    def start_server(self) -> None:
        self.server = launch.python_server(
            self.shard_id,
            "findface_grpc.shard.server",
            ["--listen", self.address, "--tarantool", f"{HOST}:{self.tarantool_port}", "--shard-id", self.shard_id,
             *self.extra_args],
            self.root / "shard.log",
            self.env,
        ).start()
        launch.wait_grpc_healthy(self.address, 60, self.server)

    def stop(self) -> None:
        for proc in (self.server, self.tarantool):
            if proc is not None:
                proc.stop()


@pytest.fixture
def make_shard(tmp_path):
    """Start shards on demand; all are stopped when the test ends."""
    started: list[ShardProcesses] = []

    def make(name: str = "shard-0", extra_args: list[str] | None = None, memtx_mb: int = 256,
             env: dict[str, str] | None = None) -> ShardProcesses:
        shard = ShardProcesses(tmp_path / name, name, extra_args or [], env or {}, memtx_mb=memtx_mb)
        started.append(shard)
        shard.start_tarantool()
        shard.start_server()
        return shard

    yield make
    for shard in started:
        shard.stop()


@pytest.fixture
def shard(make_shard) -> ShardProcesses:
    return make_shard()


@pytest.fixture
def stub(shard):
    with grpc.insecure_channel(shard.address, options=CHANNEL_OPTIONS) as channel:
        yield shard_pb2_grpc.ShardStub(channel)
