"""The license server as a process on loopback: validity, leases, face quota, restarts."""
from __future__ import annotations

import time

import grpc
import pytest

from findface_grpc.rpc import error_details
from findface_grpc.v1 import license_pb2
from tests.license.conftest import forge, write_license

EXTRACTOR = license_pb2.COMPONENT_KIND_EXTRACTOR
SHARD = license_pb2.COMPONENT_KIND_SHARD


def reserve(server, count: int, key: str = "") -> license_pb2.ReserveFacesResponse:
    return server.call("ReserveFaces", license_pb2.ReserveFacesRequest(count=count, idempotency_key=key))


def code_of(call) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value.code(), caught.value.details()


def wait_until(predicate, timeout: float = 5.0):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


def test_unlicensed_mode_has_no_limits(license_server):
    server = license_server()
    status = server.status()
    assert status.unlicensed_mode and status.valid and "unlicensed" in status.reason
    assert (status.limits.faces, status.limits.shards, status.limits.extractors) == (0, 0, 0)
    for i in range(5):
        server.acquire(EXTRACTOR, f"e{i}")
    assert reserve(server, 1000).used == 1000
    status = server.status()
    assert status.usage.extractors == 5 and status.usage.faces == 1000


def test_status_of_a_valid_license(tmp_path, keys, license_server):
    lic = write_license(tmp_path / "a.lic", keys[0], faces=100, shards=2, extractors=1, features=("age",))
    server = license_server(lic, keys[1])
    lease = server.acquire(SHARD, "shard-0@h:1")
    assert lease.renew_interval_s == 1 and lease.grace_period_s == 3 and lease.lease_id
    status = server.status()
    assert status.valid and not status.unlicensed_mode and status.reason == ""
    assert status.licensee == "Tests Ltd" and list(status.features) == ["age"] and len(status.license_id) == 32
    assert (status.limits.faces, status.limits.shards, status.limits.extractors) == (100, 2, 1)
    assert status.usage.shards == 1 and status.source == str(lic.resolve())
    assert [(x.instance_id, x.kind, x.lease_id) for x in status.leases] == [("shard-0@h:1", SHARD, "")]
    assert status.expires_at.seconds > time.time() + 3000 and status.checked_at.seconds > 0


def assert_refused(server, reason: str) -> None:
    status = server.status()
    assert not status.valid and reason in status.reason
    code, message = code_of(lambda: server.acquire(EXTRACTOR, "e1"))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and reason in message
    code, message = code_of(lambda: reserve(server, 1))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and reason in message
    assert wait_until(lambda: f"license invalid: " in server.log() and reason in server.log())


def test_tampered_license_is_refused(tmp_path, keys, license_server):
    lic = forge(write_license(tmp_path / "a.lic", keys[0], faces=3), limits={"faces": 3000})
    server = license_server(lic, keys[1])
    assert_refused(server, "bad signature")
    # What the license would have allowed is not shown as if it held.
    assert server.status().limits.faces == 0


def test_one_changed_byte_in_the_file_is_refused(tmp_path, keys, license_server):
    lic = write_license(tmp_path / "a.lic", keys[0], faces=3)
    data = bytearray(lic.read_bytes())
    data[len(data) // 2] ^= 0x04
    lic.write_bytes(bytes(data))
    server = license_server(lic, keys[1])
    assert not server.status().valid
    assert code_of(lambda: server.acquire(EXTRACTOR, "e1"))[0] == grpc.StatusCode.FAILED_PRECONDITION


def test_license_signed_by_another_key_is_refused(tmp_path, keys, other_keys, license_server):
    server = license_server(write_license(tmp_path / "a.lic", other_keys[0]), keys[1])
    assert_refused(server, "bad signature")


def test_expired_license_is_refused(tmp_path, keys, license_server):
    server = license_server(write_license(tmp_path / "a.lic", keys[0], faces=5, expires_in_s=-60), keys[1])
    assert_refused(server, "expired at")
    # The terms are still shown, so that one can see what expired.
    assert server.status().limits.faces == 5


def test_license_expiring_while_running_stops_leases_and_renewed_license_restores_them(tmp_path, keys, license_server):
    lic = write_license(tmp_path / "a.lic", keys[0], extractors=2, expires_in_s=1.5)
    server = license_server(lic, keys[1])
    lease = server.acquire(EXTRACTOR, "e1")
    reserve(server, 2)
    assert wait_until(lambda: not server.status().valid, 5)
    code, message = code_of(lambda: server.call("RenewLease", license_pb2.RenewLeaseRequest(lease_id=lease.lease_id)))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "expired" in message
    # Deleting faces stays possible.
    assert server.call("ReleaseFaces", license_pb2.ReleaseFacesRequest(count=1)).used == 1
    # A renewed license file is picked up without a restart.
    write_license(tmp_path / "a.lic", keys[0], extractors=2)
    assert wait_until(lambda: server.status().valid, 5)
    server.call("RenewLease", license_pb2.RenewLeaseRequest(lease_id=lease.lease_id))


def test_limits_on_leases_and_faces(tmp_path, keys, license_server):
    server = license_server(write_license(tmp_path / "a.lic", keys[0], faces=3, extractors=2), keys[1])
    server.acquire(EXTRACTOR, "e1")
    server.acquire(EXTRACTOR, "e2")
    server.acquire(EXTRACTOR, "e2")  # the same instance again: its own slot
    code, message = code_of(lambda: server.acquire(EXTRACTOR, "e3"))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "allows 2 extractor(s)" in message and "e3" in message
    assert reserve(server, 2, "a").used == 2
    assert reserve(server, 2, "a").used == 2  # a retry
    reply = reserve(server, 1, "b")
    assert (reply.used, reply.limit) == (3, 3)
    with pytest.raises(grpc.RpcError) as caught:
        reserve(server, 1, "c")
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error_details(caught.value) == {"limit": 3, "used": 3, "requested": 1}


@pytest.mark.parametrize("how", ["stop", "kill"])
def test_restart_keeps_usage(tmp_path, keys, license_server, how):
    server = license_server(write_license(tmp_path / "a.lic", keys[0], faces=10, shards=1, extractors=2), keys[1])
    lease = server.acquire(EXTRACTOR, "e1")
    server.acquire(SHARD, "s1")
    reserve(server, 4, "a")
    server.call("ReleaseFaces", license_pb2.ReleaseFacesRequest(count=1, idempotency_key="r"))
    before = server.status().usage
    getattr(server, how)()
    server.start()
    after = server.status().usage
    assert (after.faces, after.extractors, after.shards, after.faces_revision) == (3, 1, 1, before.faces_revision)
    # Leases go on, and retries of calls made before the restart still count once.
    server.call("RenewLease", license_pb2.RenewLeaseRequest(lease_id=lease.lease_id))
    assert reserve(server, 4, "a").used == 3
    code, _ = code_of(lambda: server.acquire(SHARD, "s2"))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_reconcile_over_rpc(license_server):
    server = license_server()
    reserve(server, 5)
    revision = server.status().usage.faces_revision
    reserve(server, 1)
    stale = server.call("ReconcileFaces", license_pb2.ReconcileFacesRequest(count=2, revision=revision))
    assert not stale.applied and stale.used == 6
    fresh = server.call("ReconcileFaces", license_pb2.ReconcileFacesRequest(count=2, revision=stale.revision))
    assert fresh.applied and fresh.used == 2 and server.status().usage.faces == 2
