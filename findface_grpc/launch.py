"""Starting and stopping the cluster's processes: Tarantool, the MongoDB-protocol server and our servers.

Used by the cluster launcher and by the tests, so that both run the parts exactly the same way.
"""
from __future__ import annotations

import http.client
import logging
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

log = logging.getLogger(__name__)

STORAGE_LUA = Path(__file__).resolve().parent / "shard" / "storage.lua"

# util-linux's setpriv sets the parent-death signal and then execs the server. Doing it with preexec_fn instead
# makes Python fork (not vfork) the child, and in a forked child of a process with live gRPC channels, grpcio's
# fork handlers restart its poller on a descriptor that is being closed: the child aborts ("epoll_wait error: Bad
# file descriptor", grpc/grpc#43055) before it can exec.
_SETPRIV = shutil.which("setpriv") if sys.platform.startswith("linux") else None


def _dying_with_parent(argv: list[str]) -> list[str]:
    """`argv` such that the child gets SIGTERM (and so stops gracefully) when its parent dies, even by kill -9,
    so that a launcher's children never outlive it and hold its ports. Linux with setpriv only; elsewhere the
    launcher's pid file (findface_grpc.supervise) is what finds them again."""
    return [_SETPRIV, "--pdeathsig", "TERM", "--", *argv] if _SETPRIV else argv


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


# glibc's allocator with a fixed mmap threshold: multi-MB request buffers (photo bodies, Add batches of
# descriptors) are then mmapped and given back when freed, instead of glibc raising its threshold and keeping them
# in fragmented per-thread arenas, where RSS crept up with no leak (issue 12, item 19: scripts/bench_soak.py; a
# shard holding 1M faces: 756 -> 599 bytes a face, scripts/bench_search.py). For the servers that take big bodies.
ALLOCATOR_ENV = {"MALLOC_MMAP_THRESHOLD_": "131072"}


_handed_out: set[int] = set()


def free_ports(count: int, host: str = "127.0.0.1") -> int:
    """The first of `count` consecutive ports nothing listens on, for servers started later.

    Chosen below the kernel's ephemeral range: a port from that range (bind to port 0) can be given to any
    outgoing connection's local end before the server binds it, which fails the server's start. Ports already
    handed out by this process are not given twice.
    """
    low, high = _ephemeral_range()
    first, last = (10000, low - count) if low > 12000 + count else (high + 1, 65536 - count)
    rng = random.Random()
    for _ in range(500):
        base = rng.randint(first, last)
        block = range(base, base + count)
        if _handed_out.intersection(block) or not all(_bindable(host, port) for port in block):
            continue
        _handed_out.update(block)
        return base
    raise RuntimeError(f"no {count} free consecutive ports between {first} and {last + count - 1}")


def free_port(host: str = "127.0.0.1") -> int:
    return free_ports(1, host)


def _bindable(host: str, port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def rss_bytes(pid: int) -> int:
    """Resident memory of process `pid` (VmRSS), for the benchmarks and tests that watch a server's memory."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


@dataclass
class ManagedProcess:
    """A child process with its output in a log file."""

    name: str
    argv: list[str]
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    proc: subprocess.Popen | None = None
    # time.monotonic() of the last start: how long a child ran decides how its exit is treated (supervise.py).
    started_at: float = 0.0
    # Where the last start's output begins in the log, which also holds every earlier run's.
    log_start: int = 0

    def start(self) -> "ManagedProcess":
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as out:
            self.log_start = out.seek(0, os.SEEK_END)
            self.proc = subprocess.Popen(
                _dying_with_parent(self.argv),
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, **self.env},
                cwd=self.cwd,
                # Own process group: a Ctrl-C in the launcher's terminal reaches the launcher only, which then
                # stops the children in order.
                start_new_session=True,
            )
        self.started_at = time.monotonic()
        log.debug("started %s (pid %d): %s", self.name, self.proc.pid, " ".join(self.argv))
        return self

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 15.0) -> None:
        if not self.alive:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop in %.0fs; killing it", self.name, timeout)
            self.kill()

    def kill(self) -> None:
        if self.alive:
            self.proc.kill()
            self.proc.wait()

    def tail(self, lines: int = 40) -> str:
        """The last `lines` lines of the last start's output: why it exited, not an earlier run's lines."""
        try:
            with open(self.log_path, "rb") as log:
                # A log shorter than where this run began was truncated (rotated): all of it is this run's.
                log.seek(self.log_start if log.seek(0, os.SEEK_END) >= self.log_start else 0)
                text = log.read().decode(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def wait_tcp(host: str, port: int, timeout: float, process: ManagedProcess | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and not process.alive:
            raise RuntimeError(f"{process.name} exited early (status {process.proc.returncode}):\n{process.tail()}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout:.0f}s")


def wait_grpc_healthy(address: str, timeout: float, process: ManagedProcess | None = None) -> None:
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if process is not None and not process.alive:
                raise RuntimeError(f"{process.name} exited early (status {process.proc.returncode}):\n{process.tail()}")
            try:
                if stub.Check(health_pb2.HealthCheckRequest(), timeout=1).status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.1)
    raise TimeoutError(f"{address} not healthy after {timeout:.0f}s")


def wait_http_ok(address: str, path: str, timeout: float, process: ManagedProcess | None = None) -> None:
    """Until GET http://`address``path` answers 200 (the HTTP gateway's /health does once it reaches a serving
    gateway). Straight to the address: no proxy from the environment."""
    host, _, port = address.rpartition(":")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and not process.alive:
            raise RuntimeError(f"{process.name} exited early (status {process.proc.returncode}):\n{process.tail()}")
        conn = http.client.HTTPConnection(host, int(port), timeout=2)
        try:
            conn.request("GET", path)
            if conn.getresponse().status == 200:
                return
        except (OSError, http.client.HTTPException):
            pass
        finally:
            conn.close()
        time.sleep(0.1)
    raise TimeoutError(f"http://{address}{path} not answering 200 after {timeout:.0f}s")


def venv_bin(name: str) -> str:
    """A console script of this environment (beside the running interpreter), else from PATH."""
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"{name} not found; run scripts/setup.sh")
    return found


def tarantool_process(work_dir: Path, port: int, memtx_memory_mb: int = 1024, host: str = "127.0.0.1",
                      name: str = "tarantool") -> ManagedProcess:
    """A Tarantool instance for one shard, running the shard's storage.lua (schema and stored procedures)."""
    work_dir.mkdir(parents=True, exist_ok=True)
    return ManagedProcess(
        name=name,
        argv=[shutil.which("tarantool") or "tarantool", str(STORAGE_LUA)],
        log_path=work_dir / "tarantool.log",
        env={
            "FINDFACE_TT_LISTEN": f"{host}:{port}",
            "FINDFACE_TT_WORK_DIR": str(work_dir),
            "FINDFACE_TT_MEMTX_MB": str(memtx_memory_mb),
        },
    )


def mongo_process(data_dir: Path, port: int, host: str = "127.0.0.1") -> ManagedProcess:
    """SecantusDB, a MongoDB-wire-compatible server, for local runs and tests (production uses MongoDB)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    return ManagedProcess(
        name="secantusdb",
        argv=[
            venv_bin("secantusd-py"), "--host", host, "--port", str(port),
            "--storage-path", str(data_dir), "--sync-on-commit", "--log-level", "WARNING",
        ],
        log_path=data_dir.parent / "secantusdb.log",
        cwd=data_dir,
    )


def python_server(name: str, module: str, args: list[str], log_path: Path, env: dict | None = None) -> ManagedProcess:
    return ManagedProcess(name=name, argv=[sys.executable, "-m", module, *args], log_path=log_path, env=env or {})
