"""The fast index (ann.py, fast_index.py): its answers against the full scan, how it follows writes, removals and
gallery changes, its file, and a real shard server building, saving and loading it with its real Tarantool."""
from __future__ import annotations

import time

import grpc
import numpy as np
import pytest

from findface_grpc.shard import snapshot
from findface_grpc.shard.ann import add_to_nearest, moved_centroids, nearest_lists
from findface_grpc.shard.fast_index import FastIndexes, build_layout, lay_out_rows
from findface_grpc.shard.index import DEFAULT_GALLERY, FaceIndex
from findface_grpc.shard.rows import CompactRows
from findface_grpc.v1 import common_pb2, shard_pb2
from tests.shard.test_shard_service import connect, desc, face

DIM = 32
MODEL = "test_model"


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def people(rng: np.random.Generator, count: int, per_person: int = 6) -> np.ndarray:
    """Descriptors in identities: each person's photos at cosine ~0.8 to each other."""
    centers = unit(rng.standard_normal((count // per_person + 1, DIM)))
    owners = np.repeat(np.arange(len(centers)), per_person)[:count]
    return unit(centers[owners] + rng.standard_normal((count, DIM)) * (0.5 / np.sqrt(DIM)))


def planted(rng: np.random.Generator, vectors: np.ndarray, rows: np.ndarray) -> np.ndarray:
    return unit(vectors[rows] + rng.standard_normal((len(rows), DIM)) * (0.3 / np.sqrt(DIM)))


def build(index: FaceIndex, gallery: str, nprobe: int = 16) -> None:
    index.install_fast(gallery, build_layout(index, gallery), nprobe)


def test_a_lloyd_step_moves_each_centroid_to_its_vectors_mean_direction():
    rng = np.random.default_rng(5)
    centroids = unit(rng.standard_normal((8, DIM)))
    centroids[7] = -centroids[0]  # chosen by nobody below: it must stay
    vectors = unit(centroids[rng.integers(0, 7, 500)] + rng.standard_normal((500, DIM)) * (0.3 / np.sqrt(DIM)))
    sums = np.zeros_like(centroids)
    for block in (vectors[:123], vectors[123:124], vectors[124:], vectors[:0]):
        add_to_nearest(block, centroids, sums)
    moved = moved_centroids(sums, centroids)
    nearest = np.argmax(vectors @ centroids.T, axis=1)
    for c in range(7):
        mean = vectors[nearest == c].sum(axis=0)
        assert np.allclose(moved[c], mean / np.linalg.norm(mean), atol=1e-5)
    assert np.array_equal(moved[7], centroids[7])


def test_progress_of_a_build_rises_to_one(indexed):
    index, _, _ = indexed
    heard = []
    layout = build_layout(index, "odd", heard.append)
    assert heard == sorted(heard) and heard[-1] == pytest.approx(1.0) and heard[0] > 0
    assert int(layout.offsets[-1]) == index.member_count("odd")


def top_ids(index: FaceIndex, query: np.ndarray, gallery: str, k: int = 1, full_scan: bool = False) -> list[int]:
    return [hit.face_id for hit in index.search(query, gallery, k, full_scan=full_scan)[0]]


@pytest.fixture
def indexed():
    rng = np.random.default_rng(3)
    vectors = people(rng, 6000)
    index = FaceIndex(DIM)
    index.upsert(np.arange(1, 6001), vectors, [("odd",) if i % 2 else () for i in range(1, 6001)])
    build(index, DEFAULT_GALLERY)
    build(index, "odd")
    return index, vectors, rng


def test_the_fast_index_finds_what_the_full_scan_finds(indexed):
    index, vectors, rng = indexed
    rows = rng.choice(len(vectors), 200, replace=False)
    queries = planted(rng, vectors, rows)
    first = [top_ids(index, q, DEFAULT_GALLERY)[0] for q in queries]
    assert np.mean(np.array(first) == rows + 1) >= 0.99
    # The person's other photos (six each) come with the planted one; past them the ranking is among strangers.
    overlap = np.mean([len(set(top_ids(index, q, DEFAULT_GALLERY, 5)) & set(top_ids(index, q, DEFAULT_GALLERY, 5, True))) / 5
                       for q in queries[:50]])
    assert overlap >= 0.95
    state = index.stats().fast[DEFAULT_GALLERY]
    assert (state.listed, state.delta) == (6000, 0)
    # Lists hold rows, not codes: a few bytes a face besides the centroids.
    assert state.nbytes - state.lists * DIM * 4 <= 16 * 6000


def test_a_gallery_index_only_answers_with_its_members(indexed):
    index, vectors, rng = indexed
    for row in rng.choice(len(vectors), 50, replace=False):
        hits = index.search(vectors[row], "odd", 10)[0]
        assert hits and all(hit.face_id % 2 == 1 for hit in hits)


def test_writes_removals_and_gallery_changes_take_effect_at_once(indexed):
    index, vectors, rng = indexed
    fresh = unit(rng.standard_normal((300, DIM)))
    index.upsert(np.arange(10001, 10301), fresh, [("odd",)] * 300)
    assert index.stats().fast["odd"].delta == 300
    assert all(top_ids(index, fresh[i], "odd")[0] == 10001 + i for i in range(0, 300, 7))

    index.remove([1, 3, 5])
    for face_id in (1, 3, 5):
        assert face_id not in top_ids(index, vectors[face_id - 1], DEFAULT_GALLERY, 5)
    # A removal moves the last row into the hole: the moved face is still found, in both indexes.
    assert top_ids(index, fresh[-1], "odd")[0] == 10300
    assert top_ids(index, fresh[-1], DEFAULT_GALLERY)[0] == 10300

    index.set_galleries([(7, ())])
    assert 7 not in top_ids(index, vectors[6], "odd", 5)
    assert top_ids(index, vectors[6], DEFAULT_GALLERY)[0] == 7

    # An overwritten descriptor is searched under its new value (in the delta), not its old list.
    moved = unit(rng.standard_normal((1, DIM)))
    index.upsert([9], moved, [("odd",)])
    assert top_ids(index, moved[0], "odd")[0] == 9
    assert 9 not in top_ids(index, vectors[8], "odd", 3)


def test_merging_the_delta_keeps_the_answers(indexed):
    index, vectors, rng = indexed
    fresh = people(rng, 1200)
    index.upsert(np.arange(20001, 21201), fresh, [()] * 1200)
    queries = planted(rng, fresh, np.arange(0, 1200, 10))
    before = [top_ids(index, q, DEFAULT_GALLERY)[0] for q in queries]
    indexes = FastIndexes("s", min_faces=10**9, nprobe=8, merge_batch=500, directory=None)
    indexes.maintain(index)
    indexes.maintain(index)
    indexes.maintain(index)
    assert index.stats().fast[DEFAULT_GALLERY].delta == 0
    assert index.stats().fast[DEFAULT_GALLERY].listed == 7200
    after = [top_ids(index, q, DEFAULT_GALLERY)[0] for q in queries]
    assert np.mean(np.array(after) == np.array(before)) >= 0.98
    assert np.mean(np.array(after) == np.arange(20001, 21201, 10)) >= 0.98


def test_rows_laid_out_in_list_order_keep_every_answer(indexed):
    index, vectors, rng = indexed
    fresh = unit(rng.standard_normal((300, DIM)))
    index.upsert(np.arange(10001, 10301), fresh, [("odd",)] * 300)  # in the delta, at the end
    index.remove([2, 3, 500])  # holes filled by the last rows
    index.set_galleries([(11, ()), (12, ("odd",))])
    queries = np.concatenate([planted(rng, vectors, rng.choice(len(vectors), 60, replace=False)), fresh[::10]])

    def answers() -> list:
        return [[(hit.face_id, round(hit.score, 6)) for hit in index.search(q, gallery, 10, full_scan=full)[0]]
                for q in queries for gallery in (DEFAULT_GALLERY, "odd") for full in (False, True)]

    before, stats_before = answers(), index.stats()
    galleries_before = {face_id: index.galleries_of(face_id) for face_id in (1, 11, 12, 4001, 10001, 10300)}
    assert index.cluster_rows(DEFAULT_GALLERY)
    listed = index._fast[DEFAULT_GALLERY].listed_rows()
    assert np.array_equal(listed, np.arange(len(listed)))  # each list one run of rows, list after list
    assert answers() == before
    stats = index.stats()
    assert (stats.face_count, stats.gallery_counts, stats.fast) == (stats_before.face_count, stats_before.gallery_counts, stats_before.fast)
    assert {face_id: index.galleries_of(face_id) for face_id in galleries_before} == galleries_before
    assert not index.cluster_rows(DEFAULT_GALLERY)  # already laid out

    # Writes after the move find the faces where they now are.
    index.remove([10001, 1])
    assert 10001 not in top_ids(index, fresh[0], "odd", 5)
    index.upsert([9], fresh[:1] * -1, [("odd",)])
    assert top_ids(index, -fresh[0], "odd")[0] == 9
    assert top_ids(index, fresh[5], "odd")[0] == 10006


def test_rows_are_laid_out_for_the_biggest_index_and_again_once_merges_scatter_them(indexed):
    index, vectors, rng = indexed
    lay_out_rows(index)  # the default gallery's lists: it holds every face
    assert index.rows_out_of_place(DEFAULT_GALLERY) == 0 and index.rows_out_of_place("odd") is None
    index.upsert(np.arange(20001, 20901), people(rng, 900), [()] * 900)
    ids, delta, centroids = index.delta_vectors(DEFAULT_GALLERY, 10_000)
    assert index.merge_fast(DEFAULT_GALLERY, ids, nearest_lists(delta, centroids)[:, 0], centroids) == 900
    # The merged faces sit at the end of the rows, in short runs apart from their lists.
    assert 800 <= index.rows_out_of_place(DEFAULT_GALLERY) <= 900
    queries = planted(rng, vectors, rng.choice(len(vectors), 40, replace=False))
    before = [top_ids(index, q, DEFAULT_GALLERY, 5) for q in queries]
    FastIndexes("s", min_faces=10**9, nprobe=8, merge_batch=100, directory=None).maintain(index)
    # 900 of 6,900 listed faces apart is past RELAYOUT_SHARE: laid out again
    assert index.rows_out_of_place(DEFAULT_GALLERY) == 0
    assert [top_ids(index, q, DEFAULT_GALLERY, 5) for q in queries] == before


def upkeep() -> FastIndexes:
    """The service's upkeep of fast indexes, without building any by itself."""
    return FastIndexes("s", min_faces=10**9, nprobe=8, merge_batch=100, directory=None)


def test_dropping_the_index_the_rows_follow_hands_them_to_the_biggest_one_left(indexed):
    index, vectors, rng = indexed
    lay_out_rows(index)  # for the default gallery's lists
    queries = planted(rng, vectors, rng.choice(len(vectors), 40, replace=False))
    before = [top_ids(index, q, "odd", 5) for q in queries]
    fast = upkeep()
    try:
        fast.drop(index, DEFAULT_GALLERY)
        assert index.rows_out_of_place("odd") is None  # not in the drop itself: it runs on the event loop
        fast.maintain(index)
        assert index.rows_out_of_place("odd") == 0
        assert [top_ids(index, q, "odd", 5) for q in queries] == before
        fast.drop(index, "odd")  # none left: nothing to lay out, searches scan
        fast.maintain(index)
        assert index.stats().fast == {}
        assert [top_ids(index, q, "odd", 5)[0] for q in queries] == [ids[0] for ids in before]
    finally:
        fast.close()


def wait_built(fast: FastIndexes, index: FaceIndex, gallery: str, timeout: float = 30):
    deadline = time.monotonic() + timeout
    while (state := fast.state(index, gallery)).state == "BUILDING":
        assert time.monotonic() < deadline, state
        time.sleep(0.05)
    return state


def test_a_failed_layout_leaves_the_index_ready_and_is_tried_again(indexed, monkeypatch, caplog):
    index, vectors, rng = indexed
    def out_of_memory(rows: CompactRows, order: np.ndarray) -> CompactRows:
        raise MemoryError  # the copy of the rows, which needs their memory a second time

    monkeypatch.setattr(CompactRows, "permuted", out_of_memory)
    queries = planted(rng, vectors, rng.choice(len(vectors), 40, replace=False))
    fast = upkeep()
    try:
        fast.build(index, DEFAULT_GALLERY)
        state = wait_built(fast, index, DEFAULT_GALLERY)
        assert (state.state, state.error, state.listed) == ("READY", "", 6000)
        assert "rows not laid out" in caplog.text and "MemoryError" in caplog.text
        assert index.rows_out_of_place(DEFAULT_GALLERY) != 0
        answers = [top_ids(index, q, DEFAULT_GALLERY, 5) for q in queries]
        fast.maintain(index)  # still failing: still due
        assert index.rows_out_of_place(DEFAULT_GALLERY) != 0
        monkeypatch.undo()
        fast.maintain(index)
        assert index.rows_out_of_place(DEFAULT_GALLERY) == 0
        assert [top_ids(index, q, DEFAULT_GALLERY, 5) for q in queries] == answers
        fast.maintain(index)  # done: not again
        assert index.rows_out_of_place(DEFAULT_GALLERY) == 0
    finally:
        fast.close()


def test_a_gallery_that_empties_loses_its_index(indexed):
    index, _, _ = indexed
    index.set_galleries([(i, ()) for i in range(1, 6001, 2)])
    assert "odd" not in index.stats().fast
    assert index.search(np.ones(DIM, np.float32) / np.sqrt(DIM), "odd", 5) == [[]]


def test_the_file_round_trips_and_refuses_damage(indexed, tmp_path):
    index, vectors, rng = indexed
    layout = index.fast_layout("odd")
    nprobe = index.stats().fast["odd"].nprobe
    snapshot.write_fast(tmp_path, snapshot.SavedFastIndex("odd", layout, nprobe, 42, 1.5), MODEL, DIM)
    (saved,) = snapshot.read_fast_all(tmp_path, MODEL, DIM)
    assert (saved.gallery, saved.nprobe, saved.version, saved.built_at) == ("odd", nprobe, 42, 1.5)
    assert np.array_equal(saved.layout.ids, layout.ids) and np.array_equal(saved.layout.offsets, layout.offsets)

    copy = FaceIndex(DIM)
    copy.upsert(np.arange(1, 6001), vectors, [("odd",) if i % 2 else () for i in range(1, 6001)])
    copy.install_fast("odd", saved.layout, saved.nprobe, stale=[11])
    assert copy.stats().fast["odd"].delta == 1
    for q in planted(rng, vectors, np.arange(0, 6000, 97)):
        assert top_ids(copy, q, "odd", 5) == top_ids(index, q, "odd", 5)

    assert snapshot.read_fast_all(tmp_path, "other_model", DIM) == []
    path = snapshot.fast_path(tmp_path, "odd")
    path.write_bytes(path.read_bytes()[:-8])
    assert snapshot.read_fast_all(tmp_path, MODEL, DIM) == []


# A real shard server and its Tarantool.


def states(stub) -> dict[str, common_pb2.FastIndexState]:
    return {f.gallery: f for f in stub.Stats(shard_pb2.StatsRequest()).fast_indexes}


def wait_ready(stub, gallery: str, timeout: float = 60) -> common_pb2.FastIndexState:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = states(stub).get(gallery)
        if state is not None and state.state == common_pb2.FastIndexState.READY:
            return state
        assert state is None or state.state != common_pb2.FastIndexState.FAILED, state.error
        time.sleep(0.2)
    raise AssertionError(f"fast index of {gallery!r} not ready within {timeout}s: {states(stub)}")


def search_ids(stub, queries, full_scan=False, k=5) -> list[list[int]]:
    reply = stub.Search(shard_pb2.SearchRequest(queries=[desc(q) for q in queries], gallery="default", k=k,
                                                threshold=-1.0, full_scan=full_scan))
    return [[h.face_id for h in hits.hits] for hits in reply.results]


def test_a_shard_builds_saves_and_loads_its_fast_index(make_shard, tmp_path):
    rng = np.random.default_rng(5)
    shard = make_shard(extra_args=["--snapshot-dir", str(tmp_path / "index")],
                       env={"FINDFACE_SHARD_FAST_INDEX_CHECK_S": "0.5"})
    vectors = people(rng, 4000)
    channel, stub = connect(shard.address)
    with channel:
        for start in range(0, 4000, 1000):
            stub.Add(shard_pb2.AddRequest(faces=[face(start + i + 1, v) for i, v in enumerate(vectors[start:start + 1000])]))
        with pytest.raises(grpc.RpcError) as refused:
            stub.DropIndex(shard_pb2.DropIndexRequest(gallery="default"))
        assert refused.value.code() == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.RpcError) as refused:
            stub.BuildIndex(shard_pb2.BuildIndexRequest(gallery="nobody"))
        assert refused.value.code() == grpc.StatusCode.NOT_FOUND

        started = stub.BuildIndex(shard_pb2.BuildIndexRequest(gallery="default", nprobe=8))
        assert started.state in (common_pb2.FastIndexState.BUILDING, common_pb2.FastIndexState.READY)
        # Writes go on during the build; what they add is searched beside the lists and merged after.
        late = people(rng, 300)
        stub.Add(shard_pb2.AddRequest(faces=[face(5001 + i, v) for i, v in enumerate(late)]))
        ready = wait_ready(stub, "default")
        assert ready.nprobe == 8 and ready.listed + ready.delta == 4300
        queries = planted(rng, np.concatenate([vectors, late]), np.arange(0, 4300, 43))
        expected = [i + 1 if i < 4000 else 5001 + i - 4000 for i in range(0, 4300, 43)]
        assert np.mean([hits[0] == e for hits, e in zip(search_ids(stub, queries), expected)]) >= 0.98
        assert [hits[0] for hits in search_ids(stub, queries, full_scan=True)] == expected
        deadline = time.monotonic() + 30
        while states(stub)["default"].delta and time.monotonic() < deadline:
            time.sleep(0.2)
        assert states(stub)["default"].listed == 4300
        answers = search_ids(stub, queries)
        built_at = states(stub)["default"].built_at
        assert snapshot.fast_path(tmp_path / "index", "default").exists()

    shard.server.stop()
    shard.start_server()
    channel, stub = connect(shard.address)
    with channel:
        # Loaded, not built again: ready at once, with the same build time and the same answers.
        state = states(stub)["default"]
        assert state.state == common_pb2.FastIndexState.READY and state.built_at == pytest.approx(built_at)
        assert search_ids(stub, queries) == answers
        assert "fast index of 'default' loaded" in shard.server.tail(200)

        # Written after the last save, then kill -9: those faces are searched in the delta after the restart.
        extra = unit(rng.standard_normal((50, DIM)))
        stub.Add(shard_pb2.AddRequest(faces=[face(7001 + i, v) for i, v in enumerate(extra)]))
        stub.Remove(shard_pb2.RemoveRequest(ids=[1, 2, 3]))
    shard.server.proc.kill()
    shard.server.proc.wait()
    shard.start_server()
    channel, stub = connect(shard.address)
    with channel:
        assert states(stub)["default"].state == common_pb2.FastIndexState.READY
        assert [hits[0] for hits in search_ids(stub, extra)] == list(range(7001, 7051))
        for hits in search_ids(stub, vectors[:3], k=3):
            assert not {1, 2, 3} & set(hits)

        stub.DropIndex(shard_pb2.DropIndexRequest(gallery="default"))
        assert "default" not in states(stub)
        assert not snapshot.fast_path(tmp_path / "index", "default").exists()


def test_a_gallery_reaching_the_threshold_gets_its_index_by_itself(make_shard):
    rng = np.random.default_rng(6)
    shard = make_shard(env={"FINDFACE_SHARD_FAST_INDEX_MIN_FACES": "1500", "FINDFACE_SHARD_FAST_INDEX_CHECK_S": "0.3"})
    channel, stub = connect(shard.address)
    with channel:
        vectors = people(rng, 2000)
        stub.Add(shard_pb2.AddRequest(faces=[
            face(i + 1, v, ["big"] if i < 1600 else ["small"]) for i, v in enumerate(vectors)]))
        state = wait_ready(stub, "big")
        assert state.listed == 1600
        # "default" holds all 2000 faces, so it qualifies too; "small" (400) does not.
        wait_ready(stub, "default")
        assert "small" not in states(stub)
