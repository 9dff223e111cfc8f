"""Restarts from the index snapshot: a snapshot plus the changes since equals what Tarantool holds, after a clean
stop, after kill -9 in the middle of writes, and a damaged snapshot falls back to the full rebuild."""
from __future__ import annotations

import os
import re
import signal
import threading
import time

import grpc
import numpy as np
import pytest

from findface_grpc.rpc import CHANNEL_OPTIONS
from findface_grpc.shard import snapshot
from findface_grpc.shard.index import FaceIndex
from findface_grpc.v1 import shard_pb2, shard_pb2_grpc
from tests.shard.test_shard_service import add_random, assert_same_hits, face, search, unit


@pytest.mark.parametrize("residuals", [False, True])
def test_an_image_written_and_read_back_is_the_same_index(tmp_path, residuals):
    rng = np.random.default_rng(30)
    vectors = unit(rng, 3000, 64)
    index = FaceIndex(64, residuals=residuals)
    index.upsert(np.arange(1, 3001), vectors, [("a",) if i % 3 else ("a", "b") for i in range(3000)])
    index.remove(range(1, 3001, 11))
    path = tmp_path / snapshot.FILE_NAME
    image = index.image()
    snapshot.write(path, image, index.codes_blocks(image.count), "m", 64, version=77)
    assert snapshot.read(path, "m", 64, image.scale, not residuals) is None
    loaded = snapshot.read(path, "m", 64, image.scale, residuals)
    assert loaded is not None and loaded.version == 77
    assert loaded.index.stats().gallery_counts == index.stats().gallery_counts
    queries = unit(rng, 10, 64)
    for gallery in ("default", "a", "b"):
        assert loaded.index.search(queries, gallery, 10) == index.search(queries, gallery, 10)
    assert snapshot.read(path, "other", 64, image.scale, residuals) is None
    path.write_bytes(path.read_bytes()[:-5])
    assert snapshot.read(path, "m", 64, image.scale, residuals) is None


def tarantool_view(stub) -> dict[int, tuple[str, ...]]:
    """Every face Tarantool holds, with its galleries (read through the shard's Get, which asks Tarantool)."""
    ids, after = [], 0
    while page := list(stub.ListIds(shard_pb2.ListIdsRequest(after_id=after, limit=1000)).ids):
        ids.extend(page)
        after = page[-1]
    faces = {}
    for start in range(0, len(ids), 500):
        for f in stub.Get(shard_pb2.GetRequest(ids=ids[start : start + 500])).faces:
            faces[f.id] = tuple(f.galleries)
    return faces


def index_agrees_with(stub, faces: dict[int, tuple[str, ...]], vectors: dict[int, np.ndarray]) -> None:
    stats = stub.Stats(shard_pb2.StatsRequest())
    assert stats.face_count == len(faces)
    counts: dict[str, int] = {}
    for galleries in faces.values():
        for name in galleries:
            counts[name] = counts.get(name, 0) + 1
    assert dict(stats.gallery_counts) == counts
    sample = sorted(faces)[:: max(1, len(faces) // 60)]
    for face_id in sample:
        for gallery in faces[face_id]:
            assert search(stub, [vectors[face_id]], gallery, k=1)[0][0][0] == face_id


@pytest.fixture
def snapshotting(make_shard, tmp_path):
    def make(interval_s: float = 300.0):
        return make_shard(extra_args=["--snapshot-dir", str(tmp_path / "index")],
                          env={"FINDFACE_SHARD_SNAPSHOT_INTERVAL_S": str(interval_s)})
    return make


def test_a_clean_restart_loads_the_snapshot_and_the_changes_since(snapshotting):
    shard = snapshotting()
    rng = np.random.default_rng(31)
    with grpc.insecure_channel(shard.address, options=CHANNEL_OPTIONS) as channel:
        stub = shard_pb2_grpc.ShardStub(channel)
        for start in range(1, 2001, 500):
            add_random(stub, rng, 500, start, galleries_of=lambda i: ["tenth"] if i % 10 == 0 else [])
        queries = unit(rng, 8)
        before = {g: search(stub, queries, g, k=20) for g in ("default", "tenth")}
    shard.server.stop()
    shard.start_server()
    with grpc.insecure_channel(shard.address, options=CHANNEL_OPTIONS) as channel:
        stub = shard_pb2_grpc.ShardStub(channel)
        for gallery, results in before.items():
            assert_same_hits(search(stub, queries, gallery, k=20), results)
        assert stub.Stats(shard_pb2.StatsRequest()).face_count == 2000
    log = shard.server.tail(200)
    assert "index from its snapshot" in log and "index rebuilt from Tarantool" not in log.split("serving")[-1]


def test_kill_9_during_writes_restarts_to_exactly_what_tarantool_holds(snapshotting):
    shard = snapshotting(interval_s=2.0)
    rng = np.random.default_rng(32)
    vectors: dict[int, np.ndarray] = {}
    failures: list[grpc.RpcError] = []
    stop = threading.Event()
    with grpc.insecure_channel(shard.address, options=CHANNEL_OPTIONS) as channel:
        stub = shard_pb2_grpc.ShardStub(channel)
        for start in range(1, 3001, 1000):
            vectors.update(zip(range(start, start + 1000), add_random(stub, rng, 1000, start)))

        def writes() -> None:
            """Adds, deletes and gallery changes until the server dies under them."""
            local = np.random.default_rng(33)
            next_id = 3001
            while not stop.is_set():
                batch = unit(local, 50)
                ids = list(range(next_id, next_id + 50))
                next_id += 50
                try:
                    vectors.update(zip(ids, batch))
                    stub.Add(shard_pb2.AddRequest(faces=[face(i, v, ["fresh"]) for i, v in zip(ids, batch)]))
                    stub.Remove(shard_pb2.RemoveRequest(ids=[int(i) for i in local.integers(1, next_id, 10)]))
                    stub.UpdateGalleries(shard_pb2.UpdateGalleriesRequest(
                        ids=[int(i) for i in local.integers(1, next_id, 20)], add=["moved"]))
                except grpc.RpcError as exc:
                    if exc.code() != grpc.StatusCode.UNAVAILABLE:
                        failures.append(exc)
                    return

        writer = threading.Thread(target=writes)
        writer.start()
        deadline = time.monotonic() + 20
        while "snapshot of" not in shard.server.tail(100) and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.6)  # writes after the snapshot, well before the next one
        os.kill(shard.server.proc.pid, signal.SIGKILL)
        shard.server.proc.wait()
        stop.set()
        writer.join()
    assert failures == []
    shard.start_server()
    with grpc.insecure_channel(shard.address, options=CHANNEL_OPTIONS) as channel:
        stub = shard_pb2_grpc.ShardStub(channel)
        faces = tarantool_view(stub)
        assert len(faces) > 3000
        index_agrees_with(stub, faces, vectors)
    restart = shard.server.tail(300).split("serving on")[-2]
    loaded = re.search(r"index from its snapshot \(version \d+, \d+ faces\) plus (\d+) writes and (\d+) deletes", restart)
    assert loaded, restart
    # The kill came between snapshots: the restart had changes of both kinds to apply.
    assert int(loaded.group(1)) > 0 and int(loaded.group(2)) > 0


def test_a_damaged_snapshot_falls_back_to_the_full_rebuild(snapshotting, tmp_path):
    shard = snapshotting()
    with grpc.insecure_channel(shard.address, options=CHANNEL_OPTIONS) as channel:
        vectors = add_random(shard_pb2_grpc.ShardStub(channel), np.random.default_rng(34), 500)
    shard.server.stop()
    path = tmp_path / "index" / snapshot.FILE_NAME
    damaged = bytearray(path.read_bytes())
    path.write_bytes(bytes(damaged[: len(damaged) // 2]))
    shard.start_server()
    with grpc.insecure_channel(shard.address, options=CHANNEL_OPTIONS) as channel:
        stub = shard_pb2_grpc.ShardStub(channel)
        assert stub.Stats(shard_pb2.StatsRequest()).face_count == 500
        assert search(stub, [vectors[7]], k=1)[0][0][0] == 8
    log = shard.server.tail(200)
    assert "not used" in log and "index rebuilt from Tarantool" in log
