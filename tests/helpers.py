"""Test helpers: free ports, real server processes on loopback, the labelled photos."""
from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
import time
from collections import namedtuple
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from PIL import Image, ImageOps

from findface_grpc import launch
from findface_grpc.auth import token_metadata
from findface_grpc.cluster import METRICS_FIRST_SHARD, ClusterConfig

ROOT = Path(__file__).resolve().parent.parent


def faces_dir() -> Path | None:
    path = Path(os.environ.get("FINDFACE_TEST_FACES", ROOT.parent / "shared" / "faces"))
    return path if (path / "labels.csv").exists() else None


def labelled_photos(folder: Path) -> list[tuple[str, str]]:
    with open(folder / "labels.csv", newline="") as f:
        return [(row["file"], row["identity"]) for row in csv.DictReader(f)]


def labelled_pairs(folder: Path) -> list[tuple[str, str, bool]]:
    with open(folder / "pairs.csv", newline="") as f:
        return [(r["file_a"], r["file_b"], r["same"] == "1") for r in csv.DictReader(f)]


def face_collage(photo: bytes, box: tuple[float, float, float, float], widths: tuple[int, ...]) -> bytes:
    """A 640x480 JPEG holding the face in `box` of `photo` once per width, each scaled so that its box is that wide
    (with some of its surroundings, which the detector needs), left to right on a grey ground.

    A face 26 px wide is still found by the detector (from 20 px), so the collage of widths (160, 26) holds a face
    to recognise and one that an extractor with a larger min_face_size reports as too small.
    """
    image = ImageOps.exif_transpose(Image.open(io.BytesIO(photo))).convert("RGB")
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    crop = image.crop((round(x1 - 0.6 * w), round(y1 - 0.6 * h), round(x2 + 0.6 * w), round(y2 + 0.6 * h)))
    canvas = Image.new("RGB", (640, 480), (128, 128, 128))
    left = 20
    for width in widths:
        f = width / w
        part = crop.resize((max(1, round(crop.width * f)), max(1, round(crop.height * f))), Image.LANCZOS)
        canvas.paste(part, (left, (canvas.height - part.height) // 2))
        left += part.width + 60
    out = io.BytesIO()
    canvas.save(out, "JPEG", quality=92)
    return out.getvalue()


def free_port() -> int:
    return launch.free_port()


def wait_healthy(address: str, timeout: float, proc: subprocess.Popen | None = None, service: str = "") -> None:
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(address) as ch:
        stub = health_pb2_grpc.HealthStub(ch)
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"server process exited with {proc.returncode} before becoming healthy")
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.1)
    raise TimeoutError(f"{address} not healthy after {timeout}s")


@dataclass
class ServerProcess:
    proc: subprocess.Popen
    address: str
    log_path: Path

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_server(module: str, args: list[str], address: str, log_path: Path, env: dict | None = None,
                 timeout: float = 60) -> ServerProcess:
    log_file = open(log_path, "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", module, *args],
        stdout=log_file,
        stderr=subprocess.STDOUT,
        env={**os.environ, **(env or {})},
        cwd=ROOT,
    )
    server = ServerProcess(proc, address, log_path)
    try:
        wait_healthy(address, timeout, proc)
    except Exception:
        server.stop()
        raise RuntimeError(f"{module} did not start:\n{server.log()}") from None
    return server


class _TokenInterceptor(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor,
                        grpc.StreamUnaryClientInterceptor, grpc.StreamStreamClientInterceptor):
    """Adds the API token to every call on a channel, so that tests call the gateway as before."""

    def __init__(self, token: str) -> None:
        self.metadata = token_metadata(token)

    def _add(self, details: grpc.ClientCallDetails) -> grpc.ClientCallDetails:
        return _CallDetails(details.method, details.timeout, (*(details.metadata or ()), *self.metadata),
                            details.credentials, details.wait_for_ready, details.compression)

    def intercept_unary_unary(self, continuation, details, request):
        return continuation(self._add(details), request)

    def intercept_unary_stream(self, continuation, details, request):
        return continuation(self._add(details), request)

    def intercept_stream_unary(self, continuation, details, request_iterator):
        return continuation(self._add(details), request_iterator)

    def intercept_stream_stream(self, continuation, details, request_iterator):
        return continuation(self._add(details), request_iterator)


class _CallDetails(
    namedtuple("_CallDetails", ("method", "timeout", "metadata", "credentials", "wait_for_ready", "compression")),
    grpc.ClientCallDetails,
):
    pass


def with_token(channel: grpc.Channel, token: str) -> grpc.Channel:
    """`channel` with `authorization: Token <token>` on every call."""
    return grpc.intercept_channel(channel, _TokenInterceptor(token))


# ---- the whole cluster, as the README's run command starts it ----

# Shards a test's cluster config leaves room for.
MAX_TEST_SHARDS = 4
CLUSTER_PORT_KEYS = ("gateway_port", "extractor_port", "mongo_port", "shard_base_port", "tarantool_base_port",
                     "http_port", "license_port", "upload_port", "metrics_base_port")


def cluster_config(path: Path, extra: str = "tarantool_memtx_mb = 256\n") -> dict[str, int]:
    """Write a findface-cluster config with free ports to `path`; returns the ports by config key."""
    ports = {key: free_port() for key in CLUSTER_PORT_KEYS}
    # Shard and Tarantool ports are consecutive from their bases.
    ports["shard_base_port"] = launch.free_ports(MAX_TEST_SHARDS)
    ports["tarantool_base_port"] = launch.free_ports(MAX_TEST_SHARDS)
    ports["metrics_base_port"] = launch.free_ports(METRICS_FIRST_SHARD + MAX_TEST_SHARDS)
    path.write_text("[cluster]\n" + "".join(f"{k} = {v}\n" for k, v in ports.items()) + extra)
    return ports


def bench_cluster_config(work: str, shards: int, model_pack: str) -> ClusterConfig:
    """An in-process launcher's config for the benchmarks: every port free, no photo store, quiet logs."""
    return ClusterConfig(
        data_dir=work, shards=shards, gateway_port=free_port(), http_port=free_port(), extractor_port=free_port(),
        mongo_port=free_port(), shard_base_port=launch.free_ports(shards),
        tarantool_base_port=launch.free_ports(shards), tarantool_memtx_mb=256,
        model_pack=model_pack, log_level="WARNING", license_port=free_port(), upload_port=0,
        metrics_base_port=launch.free_ports(METRICS_FIRST_SHARD + shards),
    )


def start_cluster(config: Path, data_dir: Path, log_path: Path, timeout: float = 180) -> subprocess.Popen:
    """`findface-cluster` in a subprocess, returned once it logs that the cluster is up."""
    log = open(log_path, "ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "findface_grpc.cluster", "--config", str(config), "--data-dir", str(data_dir)],
        stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if "cluster is up" in log_path.read_text():
            return proc
        if proc.poll() is not None:
            raise RuntimeError(f"launcher exited {proc.returncode}:\n{log_path.read_text()}")
        time.sleep(0.2)
    proc.kill()
    raise TimeoutError(f"cluster not up in {timeout}s:\n{log_path.read_text()}")
