"""MetadataStore against a real MongoDB-protocol server (SecantusDB): ids, states, lists, galleries."""
from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import numpy as np
import pytest

from findface_grpc.errors import AlreadyExists, Unavailable
from findface_grpc.gateway.domain import Descriptor, NewFace
from findface_grpc.gateway.face_docs import IN_CHUNK
from findface_grpc.gateway.face_pages import FacePageStore
from findface_grpc.gateway.metadata import (
    ACTIVE,
    DELETING,
    IncompleteInsert,
    MetadataStore,
    id_filters,
    id_runs,
    ids_of_runs,
    redact,
    utcnow,
)
from tests.gateway.harness import new_face as new


def test_ids_start_at_1_and_blocks_are_consecutive_and_disjoint(store, loop):
    assert loop.run(store.allocate_ids(1)) == 1
    assert loop.run(store.allocate_ids(10000)) == 2
    assert loop.run(store.allocate_ids(3)) == 10002


def test_concurrent_allocations_never_overlap(store, loop, mongo):
    # Two stores stand for two gateways, each allocating from its own thread pool.
    other = MetadataStore(mongo, store.db.name, timeout_s=5)

    async def many():
        return await asyncio.gather(*(s.allocate_ids(5) for _ in range(40) for s in (store, other)))

    try:
        firsts = loop.run(many())
    finally:
        other.close()
    blocks = sorted((f, f + 4) for f in firsts)
    assert blocks[0][0] == 1
    assert all(b[0] == a[1] + 1 for a, b in zip(blocks, blocks[1:]))


@pytest.mark.parametrize(
    "ids, expected",
    [
        ([], []),
        ([5], [{"_id": {"$in": [5]}}]),
        ([3, 1, 2, 3], [{"_id": {"$in": [1, 2, 3]}}]),
        (list(range(10, 30)), [{"_id": {"$in": list(range(10, 30))}}]),
        (list(range(1, IN_CHUNK + 3)), [{"_id": {"$in": list(range(1, IN_CHUNK + 1))}},
                                       {"_id": {"$in": [IN_CHUNK + 1, IN_CHUNK + 2]}}]),
    ],
)
def test_id_filters_are_point_lookups_in_chunks(ids, expected):
    assert id_filters(ids) == expected


def test_id_runs():
    assert id_runs([]) == []
    assert id_runs([7, 3, 4, 5, 9, 8, 3]) == [[3, 5], [7, 9]]
    assert ids_of_runs(id_runs([7, 3, 4, 5, 9, 8, 3])) == [3, 4, 5, 7, 8, 9]


def test_pending_faces_are_invisible(store, loop):
    # Pending documents are those of enrollments by gateways from before the import journal.
    first = loop.run(store.allocate_ids(3))
    faces = loop.run(store.insert_faces(range(first, first + 3), [new("a"), new("b"), new("c")], state="pending"))
    assert [f.id for f in faces] == [first, first + 1, first + 2]
    assert loop.run(store.get_active(first)) is None
    assert loop.run(FacePageStore(store).list_faces("default", 0, 10, None)) == []
    assert loop.run(store.active_faces([first, first + 1, first + 2])) == {}
    assert loop.run(store.faces_under_way()) == 3  # they hold quota, and may not be on their shards yet


def test_faces_are_inserted_active_with_the_ids_given_up_on_as_deleting(store, loop):
    first = loop.run(store.allocate_ids(4))
    faces = loop.run(store.insert_faces([first, first + 1], [new("a"), new("b")], retired=[first + 2, first + 3]))
    assert loop.run(store.get_active(first)) == faces[0]  # what enrollment returned is what is stored
    assert sorted(loop.run(store.active_faces(range(first, first + 4)))) == [first, first + 1]
    assert loop.run(store.deleting_ids(10)) == [first + 2, first + 3]
    with pytest.raises(IncompleteInsert) as info:  # an id taken already (a lost counter): the rest go in
        loop.run(store.insert_faces([first + 4, first, first + 5], [new(), new(), new()]))
    assert info.value.inserted == 2
    assert sorted(loop.run(store.active_faces(range(first, first + 6)))) == [first, first + 1, first + 4, first + 5]


def test_import_journal_entries(store, loop):
    first = loop.run(store.allocate_ids(10))
    ids = [first, first + 1, first + 2, first + 5]
    loop.run(store.open_journal("enroll-a", ids, 4, ["default", "g"]))
    entry = store.imports.find_one({"_id": "enroll-a"})
    assert (entry["state"], entry["faces"]) == ("pending", 4)
    assert entry["ids"] == [[first, first + 2], [first + 5, first + 5]]
    assert ids_of_runs(entry["ids"]) == ids
    assert loop.run(store.extend_journal("enroll-a", [first + 7, first + 8]))
    assert ids_of_runs(store.imports.find_one({"_id": "enroll-a"})["ids"]) == [*ids, first + 7, first + 8]
    # Counted as under way (holding quota, maybe not on their shards yet): its faces without an active document.
    assert loop.run(store.faces_under_way()) == 4
    loop.run(store.insert_faces([first, first + 1], [new(), new()]))
    assert loop.run(store.faces_under_way()) == 2  # the shards count the active ones
    assert loop.run(store.journal_state("enroll-a")) == "pending"
    assert loop.run(store.close_journal("enroll-a"))
    assert loop.run(store.close_journal("enroll-a"))  # gone: completed (by repair, say)
    assert loop.run(store.faces_under_way()) == 0
    # Aborted: neither closed nor completed nor extended; not counted.
    loop.run(store.open_journal("enroll-b", [first + 9], 1, ["default"]))
    assert loop.run(store.abort_journal("enroll-b")) and not loop.run(store.abort_journal("enroll-b"))
    assert not loop.run(store.close_journal("enroll-b")) and not loop.run(store.complete_journal("enroll-b"))
    assert not loop.run(store.extend_journal("enroll-b", [first + 10]))
    assert loop.run(store.faces_under_way()) == 0
    assert [e["_id"] for e in loop.run(store.journals("aborted"))] == ["enroll-b"]
    assert loop.run(store.journals("pending", created_before=utcnow() + timedelta(seconds=1))) == []
    loop.run(store.drop_journal("enroll-b"))
    assert loop.run(store.journal_state("enroll-b")) is None


def test_deleting_a_gallery_aborts_the_enrollments_into_it(store, loop):
    loop.run(store.create_gallery("g1"))
    loop.run(store.open_journal("enroll-1", [1], 1, ["default", "g1"]))
    loop.run(store.open_journal("enroll-2", [2], 1, ["default"]))
    assert loop.run(store.claim_gallery_for_delete("g1"))
    loop.run(store.mark_gallery_faces_deleting("g1"))
    assert loop.run(store.journal_state("enroll-1")) == "aborted"
    assert loop.run(store.journal_state("enroll-2")) == "pending"


def test_faces_are_inserted_under_the_ids_given(store, loop):
    # Enrollment with a shard away skips the ids of that shard's cells: the ids given need not be a run.
    first = loop.run(store.allocate_ids(5))
    ids = [first + 3, first, first + 4]
    faces = loop.run(store.insert_faces(ids, [new("a"), new("b"), new("c")]))
    assert [(f.id, f.meta) for f in faces] == [(first + 3, "a"), (first, "b"), (first + 4, "c")]
    assert {i: f.meta for i, f in loop.run(store.active_faces(range(first, first + 5))).items()} == {
        first: "b", first + 3: "a", first + 4: "c"}
    with pytest.raises(ValueError):
        loop.run(store.insert_faces([first + 1], [new(), new()]))


def test_quality_and_orientation_are_kept_and_older_faces_read_as_unknown(store, loop):
    first = loop.run(store.allocate_ids(2))
    measured = NewFace(Descriptor("m", np.zeros(4, np.float32)), ("default",), quality=np.float32(0.8125),
                       orientation=6)
    faces = loop.run(store.insert_faces([first, first + 1], [measured, new("imported")]))
    assert (faces[0].quality, faces[0].orientation) == (0.8125, 6)
    assert loop.run(store.get_active(first)) == faces[0]
    assert (faces[1].quality, faces[1].orientation) == (0.0, 0)
    # A document written before these fields existed has neither.
    store.faces.update_one({"_id": first}, {"$unset": {"quality": "", "orientation": ""}})
    older = loop.run(store.get_active(first))
    assert (older.quality, older.orientation) == (0.0, 0)


def test_stale_pending_and_deleting_scans(store, loop):
    first = loop.run(store.allocate_ids(2))
    loop.run(store.insert_faces([first, first + 1], [new(), new()], state="pending"))
    assert loop.run(store.stale_pending(utcnow() - timedelta(seconds=60), 10)) == []
    assert sorted(loop.run(store.stale_pending(utcnow() + timedelta(seconds=1), 10))) == [first, first + 1]
    assert loop.run(store.mark_deleting([first])) == 1
    assert loop.run(store.deleting_ids(10)) == [first]
    assert loop.run(store.delete_deleting([first, first + 1])) == 1  # only the one marked
    assert loop.run(store.get_doc(first)) is None
    assert loop.run(store.get_doc(first + 1))["state"] == "pending"


def test_update_is_refused_at_a_stale_revision(store, loop):
    first = loop.run(store.allocate_ids(1))
    loop.run(store.insert_faces([first], [new("a")]))
    face = loop.run(store.update_face(first, 0, {"galleries": ["default", "g"]}, "tok"))
    assert face.galleries == ("default", "g") and face.updated_at >= face.created_at
    assert loop.run(store.update_face(first, 0, {"meta": "b"}, None)) is None
    assert [d["_id"] for d in loop.run(store.unsynced(10))] == [first]
    assert not loop.run(store.clear_sync(first, "other", ["default", "g"]))
    assert not loop.run(store.clear_sync(first, "tok", ["default"]))
    assert loop.run(store.clear_sync(first, "tok", ["default", "g"]))
    assert loop.run(store.unsynced(10)) == []


def test_galleries(store, loop):
    assert [g.name for g in loop.run(store.list_galleries())] == ["default"]
    loop.run(store.create_gallery("g1"))
    with pytest.raises(AlreadyExists):
        loop.run(store.create_gallery("g1"))
    first = loop.run(store.allocate_ids(2))
    loop.run(store.insert_faces([first, first + 1], [new(galleries=("default", "g1")), new()]))
    # Their face counts are the shards' (ListGalleries asks them), not counted here.
    assert [(g.name, g.face_count) for g in loop.run(store.list_galleries())] == [("default", 0), ("g1", 0)]
    assert loop.run(store.gallery_count()) == 2
    assert loop.run(store.missing_galleries(["g1", "nope", "default"])) == ["nope"]
    assert loop.run(store.claim_gallery_for_delete("g1"))
    assert loop.run(store.missing_galleries(["g1"])) == ["g1"]
    assert loop.run(store.gallery_count()) == 1
    assert loop.run(store.mark_gallery_faces_deleting("g1")) == 1
    assert loop.run(store.get_doc(first))["state"] == DELETING
    assert loop.run(store.get_doc(first + 1))["state"] == ACTIVE
    assert loop.run(store.deleting_galleries()) == ["g1"]
    assert loop.run(store.drop_gallery("g1"))
    assert not loop.run(store.claim_gallery_for_delete("g1"))


def test_unreachable_database_is_unavailable_then_fails_fast(loop):
    store = MetadataStore("mongodb://127.0.0.1:1/?directConnection=true", "x", timeout_s=0.5)
    try:
        with pytest.raises(Unavailable, match=r"metadata store \(MongoDB\) unavailable"):
            loop.run(store.get_active(1))
        # The calls that follow do not each wait out the driver's timeout.
        started = time.monotonic()
        with pytest.raises(Unavailable, match=r"unavailable since .* retried every 1 s"):
            loop.run(store.get_active(1))
        assert time.monotonic() - started < 0.2
    finally:
        store.close()


def test_a_lost_counter_restarts_above_the_largest_id(store, loop):
    first = loop.run(store.allocate_ids(3))
    loop.run(store.insert_faces(range(first, first + 3), [new(), new(), new()]))
    store.counters.drop()
    loop.run(store.ensure_schema())
    assert loop.run(store.allocate_ids(1)) == first + 3


@pytest.mark.parametrize(
    "uri, shown",
    [
        ("mongodb://u:secret@h1:27017,h2/?replicaSet=rs", "mongodb://u:***@h1:27017,h2/?replicaSet=rs"),
        ("mongodb://127.0.0.1:27017/?directConnection=true", "mongodb://127.0.0.1:27017/?directConnection=true"),
    ],
)
def test_logged_uris_hide_the_password(uri, shown):
    assert redact(uri) == shown


def test_the_unused_photo_hash_index_of_earlier_versions_is_dropped(store, loop):
    store.faces.create_index([("photo_hash", 1)])
    loop.run(store.ensure_schema())
    assert "photo_hash_1" not in store.faces.index_information()


def test_a_write_of_the_same_faces_sent_twice_is_taken_for_done(store, loop, monkeypatch, caplog):
    # The driver sends an insert again when its connection was lost while the first attempt went on: the second
    # finds the documents of the first (same ids, same time) and that is success, not a failure.
    first = loop.run(store.allocate_ids(3))
    insert_many = store.faces.insert_many

    def twice(docs, **kwargs):
        insert_many([dict(d) for d in docs[:2]], **kwargs)
        return insert_many(docs, **kwargs)

    monkeypatch.setattr(store.faces, "insert_many", twice)
    faces = loop.run(store.insert_faces(range(first, first + 3), [new("a"), new("b"), new("c")]))
    assert sorted(loop.run(store.active_faces(range(first, first + 3)))) == [f.id for f in faces]
    assert "2 of 3 face documents were in already" in caplog.text
