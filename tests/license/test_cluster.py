"""A licensed cluster on loopback: the license server, SecantusDB, one shard (Tarantool + server), a real
extractor and the gateway, enrolling the labelled photos.

The license allows 3 faces, 1 shard and 2 extractors; leases last 3 s (renewed every second) and components
serve on for 3 s without the license server. The tests run in file order and each leaves the cluster as it
found it, with the license server up: 3 faces enrolled from test_enroll_up_to_the_face_limit on.
"""
from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from findface_grpc import launch
from findface_grpc.rpc import CHANNEL_OPTIONS
from findface_grpc.v1 import common_pb2, extractor_pb2, extractor_pb2_grpc, gateway_pb2, license_pb2
from tests.gateway.conftest import require_pack
from tests.gateway.harness import HOST, START_TIMEOUT, address, face_stub, gateway_process, make_token
from tests.helpers import labelled_photos
from tests.license.conftest import LicenseServer, serving, write_license

PACK = "scrfd-mbf"
FACES, SHARDS, EXTRACTORS = 3, 1, 2
DB = "licensed"


def wait_until(predicate, timeout: float = 10.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met after {timeout}s")
        time.sleep(0.1)


def extractor_process(base: Path, name: str, addr: str, license_server: str) -> launch.ManagedProcess:
    return launch.python_server(name, "findface_grpc.extractor.server",
                                ["--listen", addr, "--model-pack", PACK, "--license-server", license_server],
                                base / f"{name}.log")


def shard_process(base: Path, name: str, addr: str, tarantool: str, license_server: str) -> launch.ManagedProcess:
    return launch.python_server(name, "findface_grpc.shard.server",
                                ["--listen", addr, "--tarantool", tarantool, "--shard-id", name,
                                 "--license-server", license_server],
                                base / f"{name}.log")


def exits_refused(proc: launch.ManagedProcess, timeout: float = 30) -> str:
    """Start a process that must refuse to serve; its log."""
    proc.start()
    code = proc.proc.wait(timeout)
    assert code != 0, proc.tail()
    return proc.tail()


class LicensedCluster:
    def __init__(self, base: Path, keys) -> None:
        self.base = base
        lic = write_license(base / "cluster.lic", keys[0], faces=FACES, shards=SHARDS, extractors=EXTRACTORS)
        (base / "license").mkdir()
        self.license = LicenseServer(base / "license", lic, keys[1])
        self.mongo_port, self.tt_port = launch.free_port(), launch.free_port()
        self.mongo_uri = f"mongodb://{address(self.mongo_port)}/?directConnection=true"
        self.mongo = launch.mongo_process(base / "mongo", self.mongo_port)
        self.tarantool = launch.tarantool_process(base / "tarantool", self.tt_port, 256)
        self.shard_addr, self.extractor_addr, self.gateway_addr = (address(launch.free_port()) for _ in range(3))
        self.shard = shard_process(base, "shard-0", self.shard_addr, address(self.tt_port), self.license.address)
        self.extractor = extractor_process(base, "extractor-a", self.extractor_addr, self.license.address)
        self.gateway = gateway_process("gateway", base, self.gateway_addr, [self.shard_addr], self.extractor_addr,
                                       self.mongo_uri, DB, license_server=self.license.address,
                                       license_reconcile_interval_s=1)
        self.others: list[launch.ManagedProcess] = []

    def start(self) -> None:
        self.license.start()
        self.mongo.start()
        self.tarantool.start()
        launch.wait_tcp(HOST, self.mongo_port, START_TIMEOUT, self.mongo)
        launch.wait_tcp(HOST, self.tt_port, START_TIMEOUT, self.tarantool)
        self.shard.start()
        self.extractor.start()
        serving(self.shard, self.shard_addr)
        serving(self.extractor, self.extractor_addr)
        serving(self.gateway.start(), self.gateway_addr)
        self.channel, self.stub = face_stub(self.gateway_addr, make_token(self.mongo_uri, DB))
        self.extractor_channel = grpc.insecure_channel(self.extractor_addr, options=CHANNEL_OPTIONS)

    def stop(self) -> None:
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda proc: proc.stop(), [*self.others, self.gateway, self.extractor, self.shard]))
            list(pool.map(lambda proc: proc.stop(), [self.tarantool, self.mongo]))
        self.license.stop()

    def usage(self) -> license_pb2.Usage:
        return self.license.status().usage

    def face_ids(self) -> list[int]:
        return [f.id for f in self.stub.ListFaces(gateway_pb2.ListFacesRequest(limit=1000), timeout=10).faces]

    def extractor_info(self) -> extractor_pb2.InfoResponse:
        return extractor_pb2_grpc.ExtractorStub(self.extractor_channel).Info(extractor_pb2.InfoRequest(), timeout=5)

    def extractor_health(self) -> int:
        stub = health_pb2_grpc.HealthStub(self.extractor_channel)
        return stub.Check(health_pb2.HealthCheckRequest(), timeout=5).status


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, keys):
    require_pack(PACK)
    c = LicensedCluster(tmp_path_factory.mktemp("licensed"), keys)
    try:
        c.start()
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="module")
def photos(faces):
    return [(faces / name).read_bytes() for name, _ in labelled_photos(faces)[:FACES + 1]]


def enroll(stub, photo: bytes) -> gateway_pb2.CreateFaceResponse:
    return stub.CreateFace(gateway_pb2.CreateFaceRequest(image=common_pb2.ImageSource(content=photo)), timeout=60)


def refused(call) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value


def test_components_hold_leases(cluster):
    status = cluster.license.status()
    assert status.valid and (status.usage.shards, status.usage.extractors) == (1, 1)
    held = sorted(lease.instance_id for lease in status.leases)
    assert held == sorted([f"shard-0@{cluster.shard_addr}", f"extractor@{cluster.extractor_addr}"])


def test_enroll_up_to_the_face_limit(cluster, photos):
    ids = [enroll(cluster.stub, photo).faces[0].id for photo in photos[:FACES]]
    assert cluster.usage().faces == FACES
    error = refused(lambda: enroll(cluster.stub, photos[FACES]))
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert f"the license allows {FACES} faces, {FACES} are in use" in error.details()
    # Nothing of the refused face is stored anywhere, nor counted.
    assert sorted(cluster.face_ids()) == sorted(ids)
    with grpc.insecure_channel(cluster.shard_addr, options=CHANNEL_OPTIONS) as ch:
        from findface_grpc.v1 import shard_pb2, shard_pb2_grpc

        listed = shard_pb2_grpc.ShardStub(ch).ListIds(shard_pb2.ListIdsRequest(limit=100), timeout=10).ids
    assert sorted(listed) == sorted(ids)
    assert cluster.usage().faces == FACES


def test_import_past_the_limit_is_refused(cluster, photos):
    reply = extractor_pb2_grpc.ExtractorStub(cluster.extractor_channel).Extract(
        extractor_pb2.ExtractRequest(image=photos[0]), timeout=30)
    request = gateway_pb2.ImportFacesRequest(faces=[gateway_pb2.ImportFace(descriptor=reply.faces[0].descriptor)])
    error = refused(lambda: list(cluster.stub.ImportFaces(iter([request]), timeout=30)))
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert len(cluster.face_ids()) == FACES and cluster.usage().faces == FACES


def test_deleting_a_face_frees_quota(cluster, photos):
    victim = cluster.face_ids()[0]
    cluster.stub.DeleteFace(gateway_pb2.DeleteFaceRequest(id=victim), timeout=10)
    assert cluster.usage().faces == FACES - 1
    enroll(cluster.stub, photos[FACES])
    assert cluster.usage().faces == FACES and len(cluster.face_ids()) == FACES


def test_shard_past_the_licensed_count_exits(cluster):
    # Its Tarantool is not even running: the lease is asked for first.
    proc = shard_process(cluster.base, "shard-1", address(launch.free_port()), address(launch.free_port()),
                         cluster.license.address)
    log = exits_refused(proc)
    assert "cannot start: license: the license allows 1 shard(s) and all are in use" in log


def test_third_extractor_is_refused_and_a_killed_ones_slot_frees_after_its_lease(cluster):
    second_addr = address(launch.free_port())
    second = extractor_process(cluster.base, "extractor-b", second_addr, cluster.license.address)
    cluster.others.append(second)
    serving(second.start(), second_addr)
    assert cluster.usage().extractors == 2

    third_addr = address(launch.free_port())
    log = exits_refused(extractor_process(cluster.base, "extractor-c", third_addr, cluster.license.address))
    assert "the license allows 2 extractor(s) and all are in use" in log and f"extractor@{third_addr} may not" in log

    second.kill()
    killed_at = time.monotonic()
    assert cluster.usage().extractors == 2  # its lease runs on until it expires
    wait_until(lambda: cluster.usage().extractors == 1, 6, "the killed extractor's lease to expire")
    assert time.monotonic() - killed_at > 1  # not before its TTL (3 s from its last renewal, <= 1 s before the kill)

    third = extractor_process(cluster.base, "extractor-c", third_addr, cluster.license.address)
    cluster.others.append(third)
    serving(third.start(), third_addr)
    assert cluster.usage().extractors == 2
    third.stop()  # a clean stop gives the lease back at once
    assert cluster.usage().extractors == 1


def test_license_server_restart_keeps_usage(cluster, photos):
    cluster.license.stop()
    cluster.license.start()
    usage = cluster.usage()
    assert (usage.faces, usage.shards, usage.extractors) == (FACES, 1, 1)
    assert refused(lambda: enroll(cluster.stub, photos[0])).code() == grpc.StatusCode.RESOURCE_EXHAUSTED

    # Even with its state lost, usage comes back: components acquire again and the gateway's reconcile
    # recounts the faces.
    cluster.license.stop()
    cluster.license.state_file.unlink()
    cluster.license.start()
    wait_until(lambda: cluster.usage().faces == FACES, 10, "face usage reconciled")
    wait_until(lambda: (cluster.usage().shards, cluster.usage().extractors) == (1, 1), 10, "leases acquired again")
    assert refused(lambda: enroll(cluster.stub, photos[0])).code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_reconcile_counts_the_shards_faces_and_waits_for_a_shard_that_is_down(cluster):
    # Usage drifted up (as after a crash between a reservation and its release). With the only shard down the
    # gateway cannot count its faces: it must not send the live shards' count (0, which would let 3 more faces
    # past the license), so the server's count stands until the shard is back, and then is corrected.
    cluster.shard.stop()  # first, while the license server can take its lease back
    try:
        cluster.license.stop()
        state = json.loads(cluster.license.state_file.read_text())
        state["faces_used"] = FACES + 2
        cluster.license.state_file.write_text(json.dumps(state))
        cluster.license.start()
        time.sleep(3.5)  # three reconcile rounds
        assert cluster.usage().faces == FACES + 2
        assert "faces not counted until every shard answers" in (cluster.base / "gateway.log").read_text()
    finally:
        cluster.shard.start()
        serving(cluster.shard, cluster.shard_addr)
    wait_until(lambda: cluster.usage().faces == FACES, 10, "face usage reconciled from the shard's count")


def test_grace_period_holds_then_ends(cluster, photos):
    cluster.license.stop()
    try:
        stopped_at = time.monotonic()
        # Within the grace period the extractor serves on its last lease...
        assert cluster.extractor_info().embedder_model_id
        # ...though no face can be enrolled: the quota cannot be checked.
        error = refused(lambda: enroll(cluster.stub, photos[0]))
        assert error.code() == grpc.StatusCode.UNAVAILABLE and "license server" in error.details()

        def refused_now():
            try:
                cluster.extractor_info()
                return None
            except grpc.RpcError as exc:
                return exc

        error = wait_until(refused_now, 8, "the grace period to end")
        assert time.monotonic() - stopped_at > 1.5
        assert error.code() == grpc.StatusCode.UNAVAILABLE
        assert "unreachable" in error.details() and "grace period of 3s is over" in error.details()
        assert cluster.extractor_health() == health_pb2.HealthCheckResponse.NOT_SERVING
    finally:
        cluster.license.start()
    wait_until(lambda: refused_now() is None, 10, "the extractor to serve again")
    assert cluster.extractor_health() == health_pb2.HealthCheckResponse.SERVING
    log = Path(cluster.base / "extractor-a.log").read_text()
    assert "stops taking new work" in log and "may serve again" in log
