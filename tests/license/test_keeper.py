"""LeaseKeeper against a real license server: refused at start, grace on an outage, recovery, a lost slot.

The keeper's clock is moved by the test, so the grace period is watched without waiting it out; the license
server's leases run on the real clock.
"""
from __future__ import annotations

import asyncio

import pytest

from findface_grpc.errors import FailedPrecondition, ResourceExhausted, Unavailable
from findface_grpc.license.client import Kind, LeaseKeeper, instance_id
from findface_grpc.v1 import license_pb2
from tests.license.conftest import write_license


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def run(coro):
    return asyncio.run(coro)


def test_refused_at_start_past_the_count(tmp_path, keys, license_server):
    server = license_server(write_license(tmp_path / "a.lic", keys[0], shards=1), keys[1])

    async def scenario():
        first = LeaseKeeper(server.address, Kind.SHARD, "s1")
        await first.start()
        second = LeaseKeeper(server.address, Kind.SHARD, "s2")
        with pytest.raises(ResourceExhausted, match=r"^license: the license allows 1 shard\(s\).*\(s1\); s2 may not"):
            await second.start()
        await first.stop()  # gives the slot back at once
        third = LeaseKeeper(server.address, Kind.SHARD, "s2")
        await third.start()
        await third.stop()

    run(scenario())
    assert server.status().usage.shards == 0


def test_grace_period_on_an_outage_then_recovery(tmp_path, keys, license_server):
    server = license_server(write_license(tmp_path / "a.lic", keys[0], extractors=1), keys[1])
    clock = Clock()
    changes = []

    async def scenario():
        keeper = LeaseKeeper(server.address, Kind.EXTRACTOR, "e1", clock=clock, call_timeout_s=1)
        keeper.watch(changes.append)
        await keeper.start()
        keeper.check()
        server.stop()
        clock.now += 2
        await keeper.heartbeat()
        keeper.check()  # within the 3 s grace period: still serving
        clock.now += 2
        await keeper.heartbeat()
        with pytest.raises(Unavailable, match="license server .* unreachable for 4s and the grace period of 3s"):
            keeper.check()
        assert changes == [False]
        server.start()
        for _ in range(50):  # the channel reconnects within a moment
            await keeper.heartbeat()
            if keeper.may_serve:
                break
            await asyncio.sleep(0.1)
        keeper.check()
        assert changes == [False, True]
        await keeper.stop()

    run(scenario())


def test_health_follows_the_end_of_the_grace_period_between_heartbeats(tmp_path, keys, license_server):
    # A call refused because the grace period ran out must not find health still saying SERVING: the
    # interceptor calls sync() before it answers, whatever the heartbeat is doing.
    server = license_server(write_license(tmp_path / "a.lic", keys[0], extractors=1), keys[1])
    clock = Clock()
    changes = []

    async def scenario():
        keeper = LeaseKeeper(server.address, Kind.EXTRACTOR, "e1", clock=clock, call_timeout_s=1)
        keeper.watch(changes.append)
        await keeper.start()
        server.stop()
        clock.now += 10  # no heartbeat in between
        assert keeper.refusal() is not None and keeper.serving
        await keeper.sync()
        assert changes == [False] and not keeper.serving
        await keeper.sync()  # idempotent
        assert changes == [False]
        await keeper.stop()

    run(scenario())


def test_lapsed_lease_taken_by_another_means_refusal_until_a_slot_frees(tmp_path, keys, license_server):
    server = license_server(write_license(tmp_path / "a.lic", keys[0], extractors=1), keys[1])

    async def scenario():
        keeper = LeaseKeeper(server.address, Kind.EXTRACTOR, "e1")
        await keeper.start()
        # As if e1 had missed its heartbeats: the server forgets its lease and e2 takes the slot.
        server.call("ReleaseLease", license_pb2.ReleaseLeaseRequest(lease_id=keeper._lease_id))
        other = LeaseKeeper(server.address, Kind.EXTRACTOR, "e2")
        await other.start()
        await keeper.heartbeat()
        with pytest.raises(FailedPrecondition, match="^license: the license allows 1 extractor"):
            keeper.check()
        await other.stop()
        await keeper.heartbeat()
        keeper.check()
        await keeper.stop()

    run(scenario())


def test_invalid_license_refuses_at_start(tmp_path, keys, license_server):
    server = license_server(write_license(tmp_path / "a.lic", keys[0], expires_in_s=-1), keys[1])

    async def scenario():
        with pytest.raises(FailedPrecondition, match="^license: license invalid: .*expired"):
            await LeaseKeeper(server.address, Kind.EXTRACTOR, "e1").start()

    run(scenario())


def test_instance_ids():
    assert instance_id("extractor", "127.0.0.1:50052") == "extractor@127.0.0.1:50052"
    assert instance_id("shard-1", "0.0.0.0:50061").startswith("shard-1@") and not instance_id(
        "shard-1", "0.0.0.0:50061").startswith("shard-1@0.0.0.0")
    # With the port picked at start, the pid tells processes apart.
    assert "#" in instance_id("extractor", "127.0.0.1:0")


def test_video_detectors_share_the_camera_limit(tmp_path, keys, license_server):
    server = license_server(write_license(tmp_path / "a.lic", keys[0], cameras=3), keys[1])

    async def scenario():
        first = LeaseKeeper(server.address, Kind.VIDEO, "video-1")
        second = LeaseKeeper(server.address, Kind.VIDEO, "video-2")
        await first.start()
        await second.start()
        assert (first.cameras, second.cameras) == (0, 0)
        assert await first.want(2) == 2
        assert await second.want(3) == 1
        assert server.status().usage.cameras == 3 and server.status().limits.cameras == 3
        await first.stop()  # its cameras are free at once
        await second.heartbeat()
        assert second.cameras == 3
        second.check()  # fewer cameras than asked for is no refusal: the detector runs what it holds
        await second.stop()

    run(scenario())
    assert server.status().usage.cameras == 0
