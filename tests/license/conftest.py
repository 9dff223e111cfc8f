"""License server tests: a vendor key pair, signed license files, and the license server as a real process."""
from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import grpc
import pytest

from findface_grpc import launch
from findface_grpc.license import licensing
from findface_grpc.license.licensing import License, LicenseLimits
from findface_grpc.v1 import license_pb2, license_pb2_grpc

HOST = "127.0.0.1"
# Short enough that expiry and grace can be watched in a test: leases renewed every second.
FAST = {"lease_ttl_s": 3, "grace_period_s": 3, "recheck_interval_s": 0.3}


@pytest.fixture(scope="session")
def keys(tmp_path_factory) -> tuple[Path, Path]:
    """The vendor's key pair: (private, public)."""
    return licensing.generate_keys(tmp_path_factory.mktemp("vendor-keys"))


@pytest.fixture(scope="session")
def other_keys(tmp_path_factory) -> tuple[Path, Path]:
    """Someone else's key pair."""
    return licensing.generate_keys(tmp_path_factory.mktemp("other-keys"))


def write_license(path: Path, private_key: Path, *, faces: int = 0, shards: int = 0, extractors: int = 0,
                  cameras: int = 0, expires_in_s: float = 3600, features: tuple[str, ...] = (),
                  licensee: str = "Tests Ltd") -> Path:
    now = licensing.utcnow()
    lic = License(licensee, now, now + timedelta(seconds=expires_in_s),
                  LicenseLimits(faces, shards, extractors, cameras), features)
    path.write_bytes(licensing.sign(lic, licensing.load_private_key(private_key)))
    return path


def forge(path: Path, **changes) -> Path:
    """The same license file with payload fields changed and the old signature kept."""
    document = json.loads(path.read_bytes())
    payload = json.loads(base64.b64decode(document["payload"]))
    payload.update(changes)
    document["payload"] = base64.b64encode(licensing.canonical_json(payload)).decode()
    path.write_text(json.dumps(document))
    return path


def serving(proc: launch.ManagedProcess, addr: str, timeout: float = 60) -> None:
    """Wait until a started server is healthy. The port is polled first: a gRPC health check against a port not
    yet open backs off for a second before it tries again."""
    host, _, port = addr.rpartition(":")
    launch.wait_tcp(host, int(port), timeout, proc)
    launch.wait_grpc_healthy(addr, timeout, proc)


@dataclass
class LicenseServer:
    """The license server as a process; stop/kill/start again keep its state file."""

    base: Path
    license: Path | None = None
    public_key: Path | None = None
    settings: dict = field(default_factory=lambda: dict(FAST))
    port: int = field(default_factory=launch.free_port)
    proc: launch.ManagedProcess | None = None

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def state_file(self) -> Path:
        return self.base / "state.json"

    @property
    def log_path(self) -> Path:
        return self.base / "license.log"

    def start(self) -> "LicenseServer":
        args = ["--listen", self.address, "--state-file", str(self.state_file)]
        if self.license is not None:
            args += ["--license", str(self.license), "--public-key", str(self.public_key)]
        env = {f"FINDFACE_LICENSE_{k.upper()}": str(v) for k, v in self.settings.items()}
        self.proc = launch.python_server("license", "findface_grpc.license.server", args, self.log_path, env).start()
        serving(self.proc, self.address)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def call(self, method: str, request, timeout: float = 5):
        with grpc.insecure_channel(self.address) as channel:
            return getattr(license_pb2_grpc.LicenseStub(channel), method)(request, timeout=timeout)

    def status(self) -> license_pb2.LicenseStatusResponse:
        return self.call("Status", license_pb2.LicenseStatusRequest())

    def acquire(self, kind: int, instance_id: str) -> license_pb2.Lease:
        return self.call("AcquireLease", license_pb2.AcquireLeaseRequest(kind=kind, instance_id=instance_id))


@pytest.fixture
def license_server(tmp_path):
    """Start license servers on demand; all are stopped when the test ends."""
    started: list[LicenseServer] = []

    def make(license: Path | None = None, public_key: Path | None = None, **settings) -> LicenseServer:
        server = LicenseServer(tmp_path / f"license-{len(started)}", license, public_key, {**FAST, **settings})
        server.base.mkdir(parents=True, exist_ok=True)
        started.append(server)
        return server.start()

    yield make
    for server in started:
        server.stop()
