"""Crash safety of the write paths: a failure at each step, then repair, leaves no orphan in either store.

The gateway's domain service runs in this process (so that tests can arm its fault hooks), against real shard
servers with their Tarantools, the real extractor and SecantusDB. "Crash" cases also fail the immediate
clean-up, leaving exactly what a gateway dying at that step would leave.
"""
from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from findface_grpc import config as config_mod
from findface_grpc import launch
from findface_grpc.errors import NotFound, Unavailable
from findface_grpc.gateway.config import GatewayConfig
from findface_grpc.gateway.domain import Descriptor, GalleryChange, NewFace
from findface_grpc.gateway.server import build_service
from findface_grpc.gateway.faults import InjectedFault
from findface_grpc.gateway.metadata import ids_of_runs
from findface_grpc.license.quota import Reservation
from findface_grpc.gateway.repair import RepairReport
from tests.gateway.harness import EventLoop, ShardSet, start_healthy
from tests.helpers import labelled_photos

CELLS = 8
MODEL = "w600k_mbf"


def gateway_config(**overrides) -> GatewayConfig:
    return config_mod.load(GatewayConfig, "gateway", None, environ={}, overrides=overrides)


async def built(cfg: GatewayConfig):
    # grpc.aio channels belong to the loop they are made on: make them on the loop that will use them.
    return build_service(cfg)


class Env:
    def __init__(self, shards: ShardSet, service, loop: EventLoop) -> None:
        self.shards, self.service, self.loop = shards, service, loop
        self.rng = np.random.default_rng(11)
        self.acknowledged: dict[int, tuple[str, ...]] = {}

    def run(self, coro):
        return self.loop.run(coro)

    def new_faces(self, count: int, galleries=()) -> list[NewFace]:
        vectors = self.rng.normal(size=(count, 512)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        return [NewFace(Descriptor(MODEL, v), tuple(galleries)) for v in vectors]

    def enroll(self, count: int, galleries=()) -> list[int]:
        ids = self.run(self.service.enrollment.import_faces(self.new_faces(count, galleries)))
        for face_id in ids:
            self.acknowledged[face_id] = tuple(sorted({"default", *galleries}))
        return ids

    def check_consistent(self, sweep: bool = True) -> RepairReport:
        """Repair, then: metadata and shards hold exactly the same faces, with the same galleries, all active."""
        report = self.run(self.service.repairer.repair(sweep=sweep, grace_s=0))
        assert report.errors == []
        metadata = self.service.cluster.metadata
        # No enrollment is left under way; those rolled back are done (kept a day, to catch late documents).
        assert [(e["_id"], e["state"], "cleaned" in e) for e in metadata.imports.find()
                if e["state"] != "aborted" or "cleaned" not in e] == []
        docs = {d["_id"]: d for d in metadata.faces.find()}
        assert {i: d["state"] for i, d in docs.items() if d["state"] != "active"} == {}
        assert [i for i, d in docs.items() if "sync" in d] == []
        owner = self.service.cluster.cells.shard_of
        held: dict[int, tuple[str, ...]] = {}
        for s in range(self.shards.count):
            ids = self.shards.ids(s)
            assert [i for i in ids if owner(i) != s] == []
            held.update(self.shards.get(s, ids) if ids else {})
        assert sorted(held) == sorted(docs)
        assert {i: g for i, g in held.items() if g != tuple(sorted(docs[i]["galleries"]))} == {}
        # Acknowledged faces are intact (with the galleries they were last acknowledged with).
        assert {i: g for i, g in self.acknowledged.items() if held.get(i) != g} == {}
        return report

    def restart_shard(self, i: int) -> None:
        """Start a killed shard server again and wait until the service's channel to it has reconnected."""
        start_healthy(self.shards.server_items([i]))
        deadline = time.monotonic() + 15
        while True:
            try:
                self.run(self.service.cluster.shards[i].list_ids(0, 1))
                return
            except Unavailable:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def wait_answering(self) -> None:
        """Wait until the service takes every shard as storing again (its probe runs only while the loop does)."""
        async def wait():
            deadline = time.monotonic() + 15
            while self.service.cluster.availability.away:
                assert time.monotonic() < deadline, self.service.cluster.availability.away
                await asyncio.sleep(0.1)

        self.run(wait())

    def forget(self, ids) -> None:
        for i in ids:
            self.acknowledged.pop(i, None)


@pytest.fixture(scope="module")
def env(tmp_path_factory, extractor, mongo):
    base = tmp_path_factory.mktemp("repair")
    shards = ShardSet(base, 2)
    shards.start_tarantools()
    start_healthy(shards.server_items())
    cfg = gateway_config(shards=",".join(shards.addresses), extractor=extractor, mongo_uri=mongo,
                         mongo_db="repair", cells=CELLS)
    loop = EventLoop()
    service = loop.run(built(cfg))
    try:
        loop.run(service.start(run_repair_loop=False))
        e = Env(shards, service, loop)
        e.enroll(10)
        yield e
    finally:
        loop.run(service.stop())
        loop.close()
        shards.stop()


@pytest.fixture(autouse=True)
def _disarm(env):
    yield
    env.service.cluster.faults.clear()


ENROLL_STEPS = ["enroll.after_allocate", "enroll.after_journal", "enroll.after_shard_add", "enroll.after_faces",
                "enroll.after_commit"]


@pytest.mark.parametrize("crash", [False, True], ids=["clean-up", "crash"])
@pytest.mark.parametrize("step", ENROLL_STEPS)
def test_failed_enrollment_leaves_no_orphan(env, step, crash):
    faults = env.service.cluster.faults
    faults.arm(step)
    if crash:
        faults.arm("enroll.rollback")
    before = env.run(env.service.cluster.metadata.allocate_ids(1))
    with pytest.raises(InjectedFault):
        env.enroll(8)  # 8 consecutive ids with 8 cells: both shards get some
    ids = list(range(before + 1, before + 9))
    visible = env.run(env.service.cluster.metadata.active_faces(ids))
    # Both stores were written (the documents go in last, already active); only the reply was lost. After a
    # crash between the documents and the journal entry's removal, repair completes the entry: the faces stay.
    whole = step == "enroll.after_commit" or (crash and step == "enroll.after_faces")
    if whole:
        assert sorted(visible) == ids
        env.acknowledged.update({i: ("default",) for i in ids})
    else:
        assert visible == {}
    report = env.check_consistent()
    if crash and step in ("enroll.after_journal", "enroll.after_shard_add"):
        assert report.rolled_back == 8 and report.completed == 0
    if crash and step == "enroll.after_faces":
        assert report.completed == 1 and report.rolled_back == 0
    assert sorted(env.run(env.service.cluster.metadata.active_faces(ids))) == (ids if whole else [])


def test_enrollment_from_a_photo_rolls_back_the_same_way(env, faces):
    name = labelled_photos(faces)[0][0]
    env.service.cluster.faults.arm("enroll.after_shard_add", "enroll.rollback")
    with pytest.raises(InjectedFault):
        env.run(env.service.enrollment.create_face((faces / name).read_bytes(), meta="photo"))
    report = env.check_consistent()
    assert report.rolled_back == 1
    assert env.service.cluster.metadata.faces.count_documents({"meta": "photo"}) == 0


def test_enrollment_with_a_dead_shard_moves_its_faces_to_the_other(env):
    cluster = env.service.cluster
    env.shards.kill(1)
    try:
        ids = env.enroll(8)  # the first Add to shard 1 fails: its faces are enrolled again on shard 0
        assert {cluster.cells.shard_of(i) for i in ids} == {0} and len(set(ids)) == 8
        assert set(cluster.availability.away) == {1}
        assert {cluster.cells.shard_of(i) for i in env.enroll(8)} == {0}  # now placed there from the start
    finally:
        env.restart_shard(1)
    env.wait_answering()
    report = env.check_consistent()
    assert report.deleted >= 1  # the moved faces' first ids, marked for repair while their shard was away
    assert {cluster.cells.shard_of(i) for i in env.enroll(8)} == {0, 1}


def test_crash_while_moving_faces_off_a_dead_shard_leaves_no_orphan(env):
    faults = env.service.cluster.faults
    metadata = env.service.cluster.metadata
    env.shards.kill(1)
    try:
        faults.arm("enroll.after_move", "enroll.rollback")
        before = env.run(metadata.allocate_ids(1))
        with pytest.raises(InjectedFault):
            env.enroll(8)
        # The journal entry names all 8 first ids and the fresh ids of the faces moved to shard 0.
        (entry,) = metadata.imports.find({"state": "pending"})
        named = ids_of_runs(entry["ids"])
        assert len(named) > 8 and named[:8] == list(range(before + 1, before + 9))
    finally:
        env.restart_shard(1)
    env.wait_answering()
    assert env.check_consistent().rolled_back == len(named)


def stuck_before(store, name: str, stall):
    """Make `store.<name>` run `stall()` first: an enrollment stuck right before that step."""
    original = getattr(store, name)

    async def stuck(*args, **kwargs):
        await stall()
        return await original(*args, **kwargs)

    setattr(store, name, stuck)


def test_enrollment_slower_than_the_grace_period_is_not_acknowledged(env, quota):
    store = env.service.cluster.metadata
    # Repair runs (from this or another gateway) while the enrollment is stuck between Add and its documents:
    # the entry is aborted and rolled back; the documents inserted after that are rolled back by the enrollment.
    stuck_before(store, "insert_faces", lambda: env.service.repairer._repair_imports(0, RepairReport()))
    try:
        with pytest.raises(Unavailable, match="rolled back"):
            env.enroll(3)
    finally:
        del store.insert_faces
    env.check_consistent()
    assert quota.used == 0


def test_enrollment_slower_than_the_grace_period_with_its_faces_in_is_completed(env):
    store = env.service.cluster.metadata
    report = RepairReport()
    # Repair runs after the documents went in, before the entry's removal: it completes the entry itself.
    stuck_before(store, "close_journal", lambda: env.service.repairer._repair_imports(0, report))
    try:
        ids = env.enroll(3)
    finally:
        del store.close_journal
    assert report.completed == 1 and sorted(env.run(store.active_faces(ids))) == ids
    env.check_consistent()


def test_documents_of_an_enrollment_stuck_past_its_rollback_are_removed(env):
    store = env.service.cluster.metadata
    # Stuck between Add and its documents past the grace period: repair rolls the entry back. The documents then
    # go in after all, and the gateway dies before it finds out: repair's next rounds take them out again.
    stuck_before(store, "insert_faces", lambda: env.service.repairer._repair_imports(0, RepairReport()))
    env.service.cluster.faults.arm("enroll.after_faces", "enroll.rollback")
    before = env.run(store.allocate_ids(1))
    try:
        with pytest.raises(InjectedFault):
            env.enroll(3)
    finally:
        del store.insert_faces
    ids = list(range(before + 1, before + 4))
    assert sorted(env.run(store.active_faces(ids))) == ids  # in the metadata, no longer in the shards
    env.check_consistent()
    assert env.run(store.active_faces(ids)) == {}


def test_deleting_a_gallery_rolls_back_the_enrollments_into_it(env):
    galleries = env.service.galleries
    store = env.service.cluster.metadata
    for step in ("insert_faces", "close_journal"):  # the gallery goes before the faces' documents, or after
        name = f"gone_{step}"
        env.run(galleries.create_gallery(name))
        stuck_before(store, step, lambda: galleries.delete_gallery(name))
        try:
            with pytest.raises(Unavailable, match="rolled back"):
                env.enroll(4, [name])
        finally:
            delattr(store, step)
        assert store.faces.count_documents({"galleries": name}) == 0
        env.check_consistent()


def test_pending_journal_entries_within_the_grace_period_are_left_alone(env):
    store = env.service.cluster.metadata
    first = env.run(store.allocate_ids(2))
    env.run(store.open_journal("enroll-test", [first, first + 1], 2, ["default"]))
    report = env.run(env.service.repairer.repair())  # the configured grace: this enrollment may still be running
    assert report.rolled_back == 0 and env.run(store.journal_state("enroll-test")) == "pending"
    assert env.check_consistent().rolled_back == 2


@pytest.mark.parametrize("step", ["delete.after_mark", "delete.after_shard_remove"])
def test_failed_delete_is_invisible_at_once_and_finished_by_repair(env, step):
    (face_id,) = env.enroll(1)
    env.service.cluster.faults.arm(step)
    env.run(env.service.faces.delete_face(face_id))  # acknowledged: the face is marked and hidden
    env.forget([face_id])
    with pytest.raises(NotFound):
        env.run(env.service.faces.get_face(face_id))
    env.check_consistent()
    assert env.service.cluster.metadata.faces.find_one({"_id": face_id}) is None


def test_delete_with_its_shard_down_is_finished_when_the_shard_is_back(env):
    ids = env.enroll(8)
    victim = next(i for i in ids if env.service.cluster.cells.shard_of(i) == 1)
    env.shards.kill(1)
    try:
        env.run(env.service.faces.delete_face(victim))
        env.forget([victim])
        assert env.run(env.service.repairer.repair(grace_s=0)).errors  # the shard is still down
    finally:
        env.restart_shard(1)
    env.check_consistent()


@pytest.mark.parametrize("step", ["update.after_mark", "update.after_shard_update"])
def test_failed_gallery_change_is_pushed_by_repair(env, step):
    name = f"rg_{step.split('.')[1]}"
    env.run(env.service.galleries.create_gallery(name))
    (face_id,) = env.enroll(1)
    env.service.cluster.faults.arm(step)
    face = env.run(env.service.faces.update_face(face_id, "m", GalleryChange(add=(name,))))
    assert face.galleries == ("default", name) and face.meta == "m"
    env.acknowledged[face_id] = tuple(sorted(("default", name)))
    assert env.check_consistent().resynced == 1


def test_failed_gallery_delete_is_finished_by_repair(env):
    env.run(env.service.galleries.create_gallery("doomed"))
    ids = env.enroll(5, ["doomed"])
    env.service.cluster.faults.arm("gallery_delete.after_mark")
    assert env.run(env.service.galleries.delete_gallery("doomed")) == 5
    env.forget(ids)
    assert "doomed" not in [g.name for g in env.run(env.service.galleries.list_galleries(counts=False)).galleries]
    assert env.run(env.service.cluster.metadata.active_faces(ids)) == {}
    report = env.check_consistent()
    assert report.galleries_dropped == 1 and report.deleted == 5
    assert env.service.cluster.metadata.galleries.find_one({"_id": "doomed"}) is None


def test_sweep_removes_shard_ids_without_metadata(env):
    orphan = 10**9 + 4  # an id far above any allocated one
    shard = env.service.cluster.shards[env.service.cluster.cells.shard_of(orphan)]
    env.run(shard.add([(orphan, ["default"], env.new_faces(1)[0].descriptor)]))
    assert env.check_consistent().orphans_removed == 1


def test_unreachable_metadata_store_and_extractor_are_unavailable(env, faces):
    dead = f"127.0.0.1:{launch.free_port()}"
    cfg = gateway_config(shards=",".join(env.shards.addresses), extractor=dead, mongo_timeout_s=0.5,
                         mongo_uri=f"mongodb://{dead}/?directConnection=true", cells=CELLS)
    service = env.run(built(cfg))
    photo = (faces / labelled_photos(faces)[0][0]).read_bytes()
    try:
        with pytest.raises(Unavailable, match=r"metadata store \(MongoDB\) unavailable"):
            env.run(service.faces.get_face(1))
        with pytest.raises(Unavailable, match="extractor"):
            env.run(service.search.detect(photo))
    finally:
        env.run(service.stop())


def test_hits_without_an_active_face_are_dropped_at_the_join(env):
    store, service = env.service.cluster.metadata, env.service
    orphan_id = 10**9 + 1  # an id far above any allocated one
    pending_id = env.run(store.allocate_ids(1))
    orphan, pending = env.new_faces(2)
    env.run(store.insert_faces([pending_id], [NewFace(pending.descriptor, ("default",))], state="pending"))
    for face_id, face in ((orphan_id, orphan), (pending_id, pending)):
        shard = service.cluster.shards[service.cluster.cells.shard_of(face_id)]
        env.run(shard.add([(face_id, ["default"], face.descriptor)]))
    for face in (orphan, pending):
        result = env.run(service.search.identify(descriptor=face.descriptor, n=3))
        assert result.results[0].matches == ()  # both are in a shard, neither is an active face
    report = env.check_consistent()
    assert (report.orphans_removed, report.rolled_back) == (1, 1)


class CountingQuota:
    """Stands in for the license server's face quota: what is in use, by the reservations and releases made."""

    def __init__(self) -> None:
        self.used = 0

    async def reserve(self, key, count):
        self.used += count
        return Reservation(key, count)

    async def release(self, key, count):
        self.used -= max(0, count)

    async def cancel(self, reservation):
        if reservation is not None:
            await self.release(f"cancel-{reservation.key}", reservation.count)


@pytest.fixture
def quota(env):
    cluster = env.service.cluster
    cluster.quota, saved = CountingQuota(), cluster.quota
    yield cluster.quota
    cluster.quota = saved


@pytest.mark.parametrize("step", ["enroll.after_journal", "enroll.after_shard_add", "enroll.after_faces"])
def test_a_failed_enrollment_gives_its_quota_back_once(env, quota, step):
    env.service.cluster.faults.arm(step)
    with pytest.raises(InjectedFault):
        env.enroll(6)
    assert quota.used == 0
    env.check_consistent()
    assert quota.used == 0


def test_quota_of_faces_taken_by_a_gallery_deletion_during_their_enrollment_is_given_back_once(env, quota):
    galleries, store = env.service.galleries, env.service.cluster.metadata
    env.run(galleries.create_gallery("quota_gone"))
    # The faces are visible when the gallery goes: its deletion gives back theirs, the enrollment nothing more.
    stuck_before(store, "close_journal", lambda: galleries.delete_gallery("quota_gone"))
    try:
        with pytest.raises(Unavailable, match="rolled back"):
            env.enroll(5, ["quota_gone"])
    finally:
        del store.close_journal
    assert quota.used == 0
    env.check_consistent()
    assert quota.used == 0
