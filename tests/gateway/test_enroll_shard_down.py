"""Enrollment with a shard away: new faces go to the shards that answer, so that enrollment is as available as the
healthiest shard; with none answering it is UNAVAILABLE and leaves nothing behind.

A real gateway process in front of 2 shards (8 cells, so that consecutive ids spread over both), the real
extractor and SecantusDB. What is left in the stores is checked after a repair pass, run by a second, in-process
gateway service on the same metadata and shards.
"""
from __future__ import annotations

import asyncio
import os
import signal
import time
from contextlib import contextmanager
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import pytest

from findface_grpc import config as config_mod
from findface_grpc import launch
from findface_grpc.gateway.cells import CellMap
from findface_grpc.gateway.config import GatewayConfig
from findface_grpc.gateway.server import build_service
from findface_grpc.v1 import common_pb2, gateway_pb2
from tests.gateway.harness import (
    HOST,
    START_TIMEOUT,
    EventLoop,
    ShardSet,
    address,
    face_stub,
    gateway_process,
    make_token,
    start_healthy,
)
from tests.helpers import labelled_photos

CELLS = 8
DB = "enroll_down"
MODEL = "w600k_mbf"
HANG_S = 1.5  # the gateway's shard_hang_s; its shard_timeout_s is 60 s, which no write here may come near
NONE = common_pb2.Threshold(preset=common_pb2.Threshold.PRESET_NONE)
owner = CellMap.from_config(CELLS, 2).shard_of


async def built(cfg: GatewayConfig):
    # grpc.aio channels belong to the loop they are made on: make them on the loop that will use them.
    return build_service(cfg)


class Env:
    def __init__(self, shards: ShardSet, stub, checker, loop: EventLoop) -> None:
        self.shards, self.stub, self.checker, self.loop = shards, stub, checker, loop
        self.rng = np.random.default_rng(5)
        self.known: dict[int, common_pb2.Descriptor] = {}  # every acknowledged imported face, by id

    def descriptors(self, count: int) -> list[common_pb2.Descriptor]:
        vectors = self.rng.normal(size=(count, 512)).astype("<f4")
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        return [common_pb2.Descriptor(model_id=MODEL, dim=512, vector=v.tobytes()) for v in vectors]

    def import_faces(self, count: int) -> list[int]:
        descriptors = self.descriptors(count)
        request = gateway_pb2.ImportFacesRequest(faces=[gateway_pb2.ImportFace(descriptor=d) for d in descriptors])
        (reply,) = self.stub.ImportFaces(iter([request]), timeout=60)
        self.known.update(zip(reply.ids, descriptors))
        return list(reply.ids)

    def identify(self, **query) -> gateway_pb2.IdentifyResponse:
        return self.stub.Identify(gateway_pb2.IdentifyRequest(n=1, threshold=NONE, **query), timeout=30)

    def found(self, ids, partial: bool) -> None:
        """Each face is readable and is the best match of its own descriptor, in answers flagged as expected."""
        for face_id in ids:
            assert self.stub.GetFace(gateway_pb2.GetFaceRequest(id=face_id), timeout=10).id == face_id
            reply = self.identify(descriptor=self.known[face_id])
            assert (reply.partial, reply.shards_answered) == (partial, 1 if partial else 2)
            assert reply.results[0].matches[0].face.id == face_id

    def wait_whole(self) -> None:
        """Until searches are answered by both shards again."""
        probe = next(iter(self.known.values()))
        deadline = time.monotonic() + 30
        while self.identify(descriptor=probe).partial:
            assert time.monotonic() < deadline, "searches still partial"
            time.sleep(0.2)

    def spread_again(self) -> None:
        """New faces reach both shards again soon after the away one is back."""
        deadline = time.monotonic() + 15
        while {owner(i) for i in self.import_faces(10)} != {0, 1}:
            assert time.monotonic() < deadline, "new faces still avoid a shard"
            time.sleep(0.2)

    def consistent(self) -> None:
        """After a repair pass: every face is active and on its own shard, every shard id has its face, and no
        acknowledged face is lost."""
        report = self.loop.run(self.checker.repairer.repair(sweep=True, grace_s=0))
        assert report.errors == []
        docs = {d["_id"]: d["state"] for d in self.checker.cluster.metadata.faces.find({}, {"state": 1})}
        assert {i: s for i, s in docs.items() if s != "active"} == {}
        held = {s: self.shards.ids(s) for s in range(2)}
        assert {s: [i for i in ids if owner(i) != s] for s, ids in held.items()} == {0: [], 1: []}
        assert sorted(held[0] + held[1]) == sorted(docs)
        assert set(self.known) <= set(docs)


@pytest.fixture(scope="module")
def env(tmp_path_factory, extractor, mongo):
    base = tmp_path_factory.mktemp("enroll_down")
    shards = ShardSet(base, 2)
    gateway_addr = address(launch.free_port())
    gateway = gateway_process("gateway", base, gateway_addr, shards.addresses, extractor, mongo, DB, cells=CELLS,
                              shard_deadline_s=1.0, shard_hang_s=HANG_S, shard_timeout_s=60)
    cfg = config_mod.load(GatewayConfig, "gateway", None, environ={}, overrides=dict(
        shards=",".join(shards.addresses), extractor=extractor, mongo_uri=mongo, mongo_db=DB, cells=CELLS,
        shard_deadline_s=1.0, shard_hang_s=HANG_S, shard_timeout_s=60))
    loop = EventLoop()
    checker = loop.run(built(cfg))
    try:
        shards.start_tarantools()
        start_healthy(shards.server_items())
        start_healthy([(gateway, gateway_addr)])
        channel, stub = face_stub(gateway_addr, make_token(mongo, DB))
        yield Env(shards, stub, checker, loop)
        channel.close()
    finally:
        loop.run(checker.stop())
        loop.close()
        gateway.stop()
        shards.stop()


@pytest.fixture(scope="module")
def photos(faces):
    return [(faces / name).read_bytes() for name, _ in labelled_photos(faces)[:3]]


def create(env: Env, photo: bytes) -> int:
    reply = env.stub.CreateFace(gateway_pb2.CreateFaceRequest(image=common_pb2.ImageSource(content=photo)),
                                timeout=60)
    (face,) = reply.faces
    return face.id


def test_enrollment_goes_on_while_a_shard_server_is_down(env, photos):
    env.import_faces(20)  # some on each shard, to be found again throughout
    env.shards.kill(1)
    try:
        # Several batches at once meet the dead shard before any has found it out; all must succeed.
        with ThreadPoolExecutor(4) as pool:
            batches = list(pool.map(lambda _: env.import_faces(5), range(12)))
        batches += [env.import_faces(5) for _ in range(4)]
        created = create(env, photos[0])
        new = [i for ids in batches for i in ids]
        assert [len(ids) for ids in batches] == [5] * 16 and len(set(new)) == 80
        assert {owner(i) for i in [*new, created]} == {0}
        env.found(new, partial=True)
        reply = env.identify(image=common_pb2.ImageSource(content=photos[0]))
        assert reply.partial and reply.results[0].matches[0].face.id == created
    finally:
        start_healthy(env.shards.server_items([1]))
    env.wait_whole()
    env.found(env.known, partial=False)
    env.consistent()
    env.spread_again()


def test_enrollment_goes_on_while_a_shards_tarantool_is_down(env, photos):
    tarantool = env.shards.tarantools[1]
    tarantool.stop()
    try:
        batches = [env.import_faces(5) for _ in range(8)]
        created = create(env, photos[1])
        new = [i for ids in batches for i in ids]
        assert {owner(i) for i in [*new, created]} == {0}
        # Shard 1 still searches what it holds in memory: the answers are whole.
        env.found(new, partial=False)
        reply = env.identify(image=common_pb2.ImageSource(content=photos[1]))
        assert reply.results[0].matches[0].face.id == created
    finally:
        tarantool.start()
        launch.wait_tcp(HOST, env.shards.tt_ports[1], START_TIMEOUT, tarantool)
    env.spread_again()
    env.found(env.known, partial=False)
    env.consistent()


@contextmanager
def stopped(process):
    """The process stopped (SIGSTOP) for the block: its sockets stay open, and nothing on them is answered."""
    os.kill(process.proc.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(process.proc.pid, signal.SIGCONT)


def timed(call):
    started = time.monotonic()
    result = call()
    return result, time.monotonic() - started


def test_a_hung_shard_costs_a_write_shard_hang_s_not_its_timeout(env, photos):
    """A shard server stopped, not dead: its connection stays up and nothing is refused, so only its silence to
    health checks tells. The import that meets it waits about shard_hang_s (1.5 s here), not shard_timeout_s
    (60 s), and its faces are all enrolled, on the other shard; the next ones do not wait at all."""
    env.import_faces(20)
    with stopped(env.shards.servers[1]):
        first, waited = timed(lambda: env.import_faces(20))
        assert HANG_S <= waited < HANG_S + 5
        after = [timed(lambda: env.import_faces(5)) for _ in range(3)]
        created, created_in = timed(lambda: create(env, photos[0]))
        new = first + [i for ids, _ in after for i in ids]
        assert len(first) == 20 and len(set(new)) == 35
        assert {owner(i) for i in [*new, created]} == {0}
        assert max(t for _, t in after) < HANG_S and created_in < 10
        env.found(new[:5], partial=True)
    env.wait_whole()
    env.found(env.known, partial=False)
    env.consistent()  # what the stopped shard took in after all, once it ran again, is cleared by repair
    env.spread_again()


def test_a_hung_shard_costs_repair_shard_hang_s_not_its_timeout(env):
    """Repair's own calls on a shard (finishing deletions, the orphan sweep) meet a stopped shard server as writes
    do: the round gives up on it after about shard_hang_s a step, not shard_timeout_s (60 s), finishes what the
    other shard holds, and leaves the rest, invisible, to the round after the shard is back."""
    ids = env.import_faces(20)
    victims = {s: next(i for i in ids if owner(i) == s) for s in (0, 1)}
    metadata, shards = env.checker.cluster.metadata, env.checker.cluster.shards
    # Connected, as a running gateway is: a connection not yet made to a stopped server fails at once.
    for shard in shards:
        env.loop.run(shard.list_ids(0, 1))
    # What a deletion whose shard call failed leaves: marked documents, the ids still on their shards.
    assert env.loop.run(metadata.mark_deleting(list(victims.values()), ("active",))) == 2
    for face_id in victims.values():
        del env.known[face_id]
    with stopped(env.shards.servers[1]):
        report, waited = timed(lambda: env.loop.run(env.checker.repairer.repair(sweep=True, grace_s=0)))
        assert 2 * HANG_S <= waited < 2 * HANG_S + 5  # the deleting step, then the sweep
        assert [error.partition(":")[0] for error in report.errors] == ["deleting", "orphans"]
        assert "shard_hang_s" in report.errors[0]
        assert victims[0] not in env.shards.ids(0)
        assert {d["_id"]: d["state"] for d in metadata.faces.find({"_id": {"$in": list(victims.values())}})} == {
            victims[1]: "deleting"}
    env.wait_whole()
    env.consistent()
    assert victims[1] not in env.shards.ids(1)


def test_a_slow_shard_keeps_its_writes(env):
    """A shard that answers health checks but whose writes take longer than shard_hang_s (its Tarantool stopped
    for 3 s, as a big import or a slow disk can make it) is waited for: its faces stay on it, none is moved."""
    env.import_faces(10)
    tarantool = env.shards.tarantools[1]
    with ThreadPoolExecutor(1) as pool:
        with stopped(tarantool):
            started = time.monotonic()
            pending = pool.submit(env.import_faces, 20)
            time.sleep(2 * HANG_S)
        ids = pending.result()
    assert time.monotonic() - started >= 2 * HANG_S
    assert {owner(i) for i in ids} == {0, 1}
    assert {owner(i) for i in env.import_faces(10)} == {0, 1}  # nor was the shard taken as away
    env.found(ids, partial=False)
    env.consistent()


def test_big_imports_at_once_are_not_taken_for_a_hang(env):
    """Three messages of 10,000 faces at once keep both shards busy with writes that wait on each other (one
    Tarantool call at a time): the shards answer health checks meanwhile, none is taken for hung, and every message
    keeps its faces on both shards."""
    with ThreadPoolExecutor(3) as pool:
        batches = list(pool.map(lambda _: env.import_faces(10000), range(3)))
    for ids in batches:
        assert 0.45 < sum(owner(i) == 1 for i in ids) / len(ids) < 0.55
        for face_id in ids:  # the other tests look each known face up: not these
            del env.known[face_id]


def test_every_shard_hung_is_unavailable_within_shard_hang_s(env):
    before = env.checker.cluster.metadata.faces.count_documents({})
    with stopped(env.shards.servers[0]), stopped(env.shards.servers[1]):
        started = time.monotonic()
        with pytest.raises(grpc.RpcError) as info:
            env.import_faces(10)
        assert time.monotonic() - started < HANG_S + 5  # not shard_timeout_s (60 s)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "no shard answered, nothing was enrolled" in info.value.details()
        assert "gave no answer to health checks" in info.value.details()
    env.wait_whole()
    env.consistent()
    assert env.checker.cluster.metadata.faces.count_documents({}) == before
    env.spread_again()


def test_no_shard_at_all_is_unavailable_and_leaves_nothing(env, photos):
    before = env.checker.cluster.metadata.faces.count_documents({})
    env.shards.kill(0)
    env.shards.kill(1)
    try:
        for call in (lambda: env.import_faces(5), lambda: create(env, photos[2])):
            with pytest.raises(grpc.RpcError) as info:
                call()
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE
            assert info.value.details().startswith("no shard answered, nothing was enrolled: shard ")
    finally:
        start_healthy(env.shards.server_items())
    env.wait_whole()
    env.consistent()
    assert env.checker.cluster.metadata.faces.count_documents({}) == before
    env.spread_again()


def test_new_ids_are_given_on_the_shards_asked_for_and_the_view_follows_the_shards(env):
    cluster = env.checker.cluster
    block = env.loop.run(cluster.new_ids(500, {0, 1}))
    assert block == list(range(block[0], block[0] + 500))  # every shard: one block, as the counter gives it
    for shards in ({0}, {1}):
        ids = env.loop.run(cluster.new_ids(500, shards))
        assert len(ids) == 500 and ids == sorted(set(ids)) and {owner(i) for i in ids} == shards

    async def away_then_back():
        cluster.availability.failed(1, "test")
        seen = cluster.writable(), cluster.writable(excluded=[0])
        deadline = time.monotonic() + 10
        while cluster.availability.away:  # shard 1 is up: the probe takes it back
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        return seen

    # Away, it gets no new faces, unless it is all there is left to try.
    assert env.loop.run(away_then_back()) == ({0}, {1})
    assert cluster.writable() == {0, 1}
