"""A launcher-run cluster for the fault tests, and what they read of it: its status file, pid file and log."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import grpc
import pytest

from findface_grpc import supervise
from findface_grpc.extractor.models import packs
from findface_grpc.rpc import CHANNEL_OPTIONS
from findface_grpc.v1 import common_pb2, gateway_pb2, gateway_pb2_grpc
from tests.helpers import cluster_config, start_cluster, with_token


@dataclass
class Launched:
    proc: subprocess.Popen
    config: Path
    data: Path
    log: Path
    ports: dict[str, int]
    token: str

    @property
    def gateway(self) -> str:
        return f"127.0.0.1:{self.ports['gateway_port']}"

    def status(self) -> dict:
        return json.loads((self.data / supervise.STATUS_FILE).read_text())

    def child(self, name: str) -> dict:
        return self.status()["children"][name]

    def pids(self) -> dict[str, int]:
        entries = json.loads((self.data / supervise.PID_FILE).read_text())["children"]
        return {e["name"]: e["pid"] for e in entries}

    def stub(self, reconnect_fast: bool = False) -> tuple[grpc.Channel, gateway_pb2_grpc.FaceServiceStub]:
        """A channel to the gateway with the token. `reconnect_fast`: with the cluster's own channel options,
        whose reconnect back-off stays at most a second, so that a test timing the gateway's return times the
        gateway, not gRPC's default client back-off (which grows to two minutes)."""
        options = CHANNEL_OPTIONS if reconnect_fast else None
        channel = with_token(grpc.insecure_channel(self.gateway, options=options), self.token)
        return channel, gateway_pb2_grpc.FaceServiceStub(channel)

    @contextmanager
    def paused(self) -> Iterator[None]:
        """The launcher stopped (SIGSTOP) for the block: its children run on, but one that dies is not started
        again until the block ends, so that a test can watch an outage for as long as it likes."""
        os.kill(self.proc.pid, signal.SIGSTOP)
        try:
            yield
        finally:
            os.kill(self.proc.pid, signal.SIGCONT)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            assert self.proc.wait(60) == 0, self.log.read_text()


def launch(tmp: Path, extra: str = "") -> Launched:
    """A whole cluster under `findface-cluster`, with free ports and its data in `tmp`; `extra` is appended to its
    config file (after the [cluster] table: other servers' tables)."""
    try:
        packs.verify_pack("scrfd-mbf", packs.default_models_dir())
    except packs.ModelError as exc:
        pytest.skip(f"models not fetched: {exc}")
    config = tmp / "cluster.toml"
    ports = cluster_config(config)
    if extra:
        config.write_text(config.read_text() + extra)
    data, log = tmp / "data", tmp / "launcher.log"
    proc = start_cluster(config, data, log)
    found = re.search(r'API token "admin" \(.*?\): (\S+)', log.read_text())
    assert found, log.read_text()
    return Launched(proc, config, data, log, ports, found.group(1))


def relaunch(old: Launched, log_name: str) -> Launched:
    log = old.log.with_name(log_name)
    return Launched(start_cluster(old.config, old.data, log), old.config, old.data, log, old.ports, old.token)


def wait_for(check: Callable[[], object], timeout: float, what: str) -> object:
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = check()
        except (OSError, ValueError, KeyError, grpc.RpcError):
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:g} s: {what}")
        time.sleep(0.1)


def gone(pid: int) -> bool:
    """Exited (a zombie counts: it holds no port and runs nothing)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat[stat.rindex(")") + 2] == "Z"


def image(photo: bytes) -> common_pb2.ImageSource:
    return common_pb2.ImageSource(content=photo)
