"""The in-memory index on its own: top-k re-scored exactly, ties, thresholds, removal, galleries, segments, and the
approximate answers it gives without the stored descriptors. The index's behaviour is tested both ways it can
re-score: from the stored descriptors ("tarantool") and from the rows' residuals ("memory")."""
from __future__ import annotations

import threading

import numpy as np
import pytest

from findface_grpc.errors import InvalidArgument
from findface_grpc.shard import rows as rows_mod
from findface_grpc.shard.index import DEFAULT_GALLERY, FaceIndex, Hit


class Durable:
    """A FaceIndex with the exact descriptors beside it, as the shard has them in Tarantool: searches re-score
    their candidates from here (or, with residuals, only those whose residuals cannot give them back)."""

    residuals = False

    def __init__(self, dim: int, capacity: int = 0) -> None:
        self.index = FaceIndex(dim, capacity, residuals=self.residuals)
        self.vectors: dict[int, np.ndarray] = {}
        self.lock = threading.Lock()

    def upsert(self, ids, vectors, galleries) -> None:
        with self.lock:
            self.vectors.update(zip(np.asarray(ids).tolist(), np.asarray(vectors, np.float32)))
        self.index.upsert(ids, vectors, galleries)

    def remove(self, ids) -> int:
        with self.lock:
            for face_id in ids:
                self.vectors.pop(int(face_id), None)
        return self.index.remove(ids)

    def exact(self, ids: list[int]) -> dict[int, np.ndarray]:
        with self.lock:
            return {i: self.vectors[i] for i in ids if i in self.vectors}

    def search(self, queries, gallery, k, threshold=-1.0):
        return self.index.search(queries, gallery, k, threshold, exact=self.exact)

    def search_many(self, queries, gallery, ks, thresholds):
        return self.index.search_many(queries, gallery, ks, thresholds, exact=self.exact)

    def __getattr__(self, name):
        return getattr(self.index, name)

    def __len__(self) -> int:
        return len(self.index)


@pytest.fixture(autouse=True, params=["tarantool", "memory"])
def rescore(request, monkeypatch) -> str:
    monkeypatch.setattr(Durable, "residuals", request.param == "memory")
    return request.param


def residual_error(dim: int) -> float:
    """How far a score re-scored from residuals (rows.py) may be from the float32 one: half of 1/RESIDUAL_STEPS of a
    code step a component, over a unit query at most sqrt(dim) times that, plus float32 rounding."""
    return 1e-6 + np.sqrt(dim) / (2 * rows_mod.RESIDUAL_STEPS * rows_mod.code_scale(dim))


def score_error(dim: int) -> float:
    """How far a re-scored score may be from the float32 one, the way this test's index re-scores."""
    return residual_error(dim) if Durable.residuals else 1e-6


def unit(rng: np.random.Generator, count: int, dim: int) -> np.ndarray:
    v = rng.standard_normal((count, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def angle(degrees: float) -> list[float]:
    r = np.deg2rad(degrees)
    return [float(np.cos(r)), float(np.sin(r))]


def reference(vectors: dict[int, np.ndarray], members: set[int] | None, query: np.ndarray, k: int,
              threshold: float) -> list[int]:
    """Brute force: score every member, sort by score then id, keep k at or above threshold."""
    scored = [
        (float(np.float32(query @ v)), face_id)
        for face_id, v in vectors.items()
        if members is None or face_id in members
    ]
    scored = [s for s in scored if s[0] >= np.float32(threshold)]
    return [face_id for _, face_id in sorted(scored, key=lambda s: (-s[0], s[1]))[:k]]


def ids_of(hits: list[Hit]) -> list[int]:
    return [h.face_id for h in hits]


# Faces at angles on the unit circle; the query points at 0 degrees, so the score is cos(angle).
CIRCLE = {1: 0, 2: 10, 3: 20, 4: 90, 5: 180, 6: 10, 7: 10}


@pytest.mark.parametrize(
    "k, threshold, expected",
    [
        (1, -1, [1]),
        (3, -1, [1, 2, 6]),  # 2, 6 and 7 tie at 10 degrees: lower ids first
        (4, -1, [1, 2, 6, 7]),
        (5, -1, [1, 2, 6, 7, 3]),
        (7, -1, [1, 2, 6, 7, 3, 4, 5]),
        (100, -1, [1, 2, 6, 7, 3, 4, 5]),  # k beyond the count: everything
        (100, float(np.cos(np.deg2rad(20))), [1, 2, 6, 7, 3]),  # a score equal to the threshold is kept
        (100, 0.95, [1, 2, 6, 7]),
        (2, 0.95, [1, 2]),
        (100, 1.0, [1]),
        (100, -0.5, [1, 2, 6, 7, 3, 4]),
    ],
)
def test_top_k_order_ties_and_threshold(k, threshold, expected):
    idx = Durable(2)
    idx.upsert(list(CIRCLE), np.array([angle(a) for a in CIRCLE.values()]), [()] * len(CIRCLE))
    hits = idx.search(np.array([[1.0, 0.0]]), DEFAULT_GALLERY, k, threshold)[0]
    assert ids_of(hits) == expected
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True)
    assert hits[0].score == pytest.approx(1.0)


@pytest.mark.parametrize("k", [1, 3, 10, 40])
def test_ties_at_the_cut_go_to_the_lowest_ids(k):
    # 50 identical faces under shuffled ids: whichever ones argpartition keeps, the k lowest ids must win.
    rng = np.random.default_rng(1)
    ids = rng.permutation(np.arange(1000, 1050))
    idx = Durable(4)
    idx.upsert(ids, np.tile([[0.5, 0.5, 0.5, 0.5]], (50, 1)), [()] * 50)
    hits = idx.search(np.array([[0.5, 0.5, 0.5, 0.5]]), DEFAULT_GALLERY, k)[0]
    assert ids_of(hits) == list(range(1000, 1000 + k))


def test_removal_moves_the_last_row_and_keeps_ids_and_galleries_right():
    rng = np.random.default_rng(2)
    vectors = unit(rng, 6, 8)
    idx = Durable(8)
    galleries = [("a",), ("b",), (), ("a", "b"), (), ("b",)]
    idx.upsert([10, 20, 30, 40, 50, 60], vectors, galleries)
    assert idx.remove([20, 999, 20]) == 1  # unknown and repeated ids count nothing
    assert len(idx) == 5
    # Face 60 (the last row) now sits in face 20's row: each face still finds itself, with its own galleries.
    for face_id, v, g in zip([10, 30, 40, 50, 60], vectors[[0, 2, 3, 4, 5]], [galleries[i] for i in (0, 2, 3, 4, 5)]):
        assert idx.search(v[None], DEFAULT_GALLERY, 1)[0][0] == Hit(face_id, pytest.approx(1.0, abs=max(1e-5, score_error(8))))
        assert idx.galleries_of(face_id) == frozenset(g) | {DEFAULT_GALLERY}
        for name in g:
            assert idx.search(v[None], name, 1)[0][0].face_id == face_id
    assert set(ids_of(idx.search(vectors[5][None], "b", 10)[0])) == {40, 60}
    assert idx.stats().gallery_counts == {DEFAULT_GALLERY: 5, "a": 2, "b": 2}
    # Remove everything, last row first and then from the front.
    assert idx.remove([60, 10, 30, 40, 50]) == 5
    assert len(idx) == 0
    assert idx.search(vectors[:1], DEFAULT_GALLERY, 5) == [[]]
    assert idx.stats().gallery_counts == {DEFAULT_GALLERY: 0}


def test_gallery_scoping_with_a_face_in_two_galleries():
    idx = Durable(2)
    idx.upsert([1, 2, 3], np.array([angle(0), angle(5), angle(10)]), [("x",), ("x", "y"), ("y",)])
    q = np.array([angle(0)])
    assert ids_of(idx.search(q, "x", 10)[0]) == [1, 2]
    assert ids_of(idx.search(q, "y", 10)[0]) == [2, 3]
    assert ids_of(idx.search(q, DEFAULT_GALLERY, 10)[0]) == [1, 2, 3]
    assert idx.search(q, "nobody", 10) == [[]]
    idx.set_galleries([(2, ["y"]), (999, ["x"])])
    assert ids_of(idx.search(q, "x", 10)[0]) == [1]
    idx.upsert([1], np.array([angle(0)]), [("y", DEFAULT_GALLERY)])  # replacing a face moves its galleries
    assert idx.search(q, "x", 10) == [[]]
    assert ids_of(idx.search(q, "y", 10)[0]) == [1, 2, 3]
    assert idx.stats().gallery_counts == {DEFAULT_GALLERY: 3, "y": 3}


def test_replace_overwrites_the_vector_and_a_repeated_id_in_a_batch_keeps_the_last():
    idx = Durable(2)
    idx.upsert([7, 8, 7], np.array([angle(90), angle(45), angle(0)]), [("a",), (), ("b",)])
    assert len(idx) == 2
    assert idx.galleries_of(7) == {"b", DEFAULT_GALLERY}
    idx.upsert([8], np.array([angle(1)]), [()])
    assert ids_of(idx.search(np.array([angle(0)]), DEFAULT_GALLERY, 2)[0]) == [7, 8]
    assert idx.approximate_vector(8) == pytest.approx(np.array(angle(1), np.float32), abs=0.01)


@pytest.mark.parametrize("share", [0.01, 0.1, 0.3, 0.9])
def test_gallery_search_over_many_segments_equals_brute_force(monkeypatch, share):
    monkeypatch.setattr(rows_mod, "SEGMENT_ROWS", 64)  # many segments, the last one partly filled
    rng = np.random.default_rng(3)
    n, dim = 3000, 32
    vectors = unit(rng, n, dim)
    ids = rng.permutation(np.arange(1, 10 * n, 10))[:n]
    in_gallery = rng.random(n) < share
    idx = Durable(dim)
    idx.upsert(ids, vectors, [("g",) if m else ("other",) for m in in_gallery])
    gone = ids[:50]  # removals move rows and their gallery bits
    idx.remove(gone.tolist())
    alive = {int(i): v for i, v in zip(ids, vectors) if i not in set(gone.tolist())}
    members = {int(i) for i, m in zip(ids, in_gallery) if m} - set(gone.tolist())
    queries = unit(rng, 20, dim)
    for gallery, wanted in (("g", members), (DEFAULT_GALLERY, None)):
        for q, hits in zip(queries, idx.search(queries, gallery, 15, 0.1)):
            assert ids_of(hits) == reference(alive, wanted, q, 15, 0.1)
            assert [h.score for h in hits] == pytest.approx([float(q @ alive[h.face_id]) for h in hits], abs=score_error(dim))


def test_without_stored_descriptors_the_codes_answer_closely():
    rng = np.random.default_rng(8)
    vectors = unit(rng, 5000, 512)
    idx = FaceIndex(512)
    idx.upsert(np.arange(1, 5001), vectors, [()] * 5000)
    queries = vectors[:50] + 0.02 * rng.standard_normal((50, 512)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    for i, hits in enumerate(idx.search(queries, DEFAULT_GALLERY, 5)):
        assert hits[0].face_id == i + 1
        exact = vectors[[h.face_id - 1 for h in hits]] @ queries[i]
        assert [h.score for h in hits] == pytest.approx(exact.tolist(), abs=3e-3)


def test_a_store_that_is_down_leaves_the_approximate_answer():
    from findface_grpc.errors import Unavailable

    def down(ids):
        raise Unavailable("Tarantool is down")

    idx = FaceIndex(2)
    idx.upsert([1, 2], np.array([angle(0), angle(30)]), [(), ()])
    hits = idx.search(np.array([angle(0)]), DEFAULT_GALLERY, 2, exact=down)[0]
    assert ids_of(hits) == [1, 2]
    assert hits[0].score == pytest.approx(1.0, abs=0.01)


@pytest.mark.parametrize("count", [1, 5, 15, 16, 40])
def test_a_batch_of_queries_with_their_own_k_and_threshold_equals_one_by_one(count, monkeypatch):
    monkeypatch.setattr(rows_mod, "SEGMENT_ROWS", 128)
    rng = np.random.default_rng(4)
    vectors = unit(rng, 1000, 16)
    idx = Durable(16, capacity=10)  # grows on the way
    for start in range(0, 1000, 100):
        galleries = [("g",) if start % 200 else ()] * 100
        idx.upsert(np.arange(start + 1, start + 101), vectors[start : start + 100], galleries)
    queries = unit(rng, count, 16)
    ks = [int(k) for k in rng.integers(1, 30, count)]
    thresholds = [float(t) for t in rng.uniform(-1, 0.5, count)]
    alive = {i + 1: v for i, v in enumerate(vectors)}
    for gallery in (DEFAULT_GALLERY, "g"):
        members = None if gallery == DEFAULT_GALLERY else {i + 1 for i in range(1000) if (i // 100) % 2}
        together = idx.search_many(queries, gallery, ks, thresholds)
        for q, k, t, hits in zip(queries, ks, thresholds, together):
            assert ids_of(hits) == ids_of(idx.search(q[None], gallery, k, t)[0]) == reference(alive, members, q, k, t)


@pytest.mark.parametrize(
    "call",
    [
        lambda idx: idx.search(np.zeros((1, 3)), DEFAULT_GALLERY, 1),
        lambda idx: idx.search(np.zeros((1, 4)), DEFAULT_GALLERY, 0),
        lambda idx: idx.search_many(np.zeros((2, 4)), DEFAULT_GALLERY, [1], [0.0, 0.0]),
        lambda idx: idx.upsert([1, 2], np.zeros((1, 4)), [(), ()]),
    ],
)
def test_misuse_is_refused(call):
    idx = Durable(4)
    with pytest.raises(InvalidArgument):
        call(idx)


def test_searches_during_writes_see_consistent_rows():
    # Writers move rows (removal swaps) and grow the matrix while searches run: every hit must name a face that
    # holds that vector.
    rng = np.random.default_rng(5)
    vectors = unit(rng, 6000, 16)
    idx = Durable(16)
    idx.upsert(np.arange(1, 2001), vectors[:2000], [("g",) if i % 2 else () for i in range(2000)])
    errors: list[str] = []
    stop = threading.Event()

    def churn():
        r = np.random.default_rng(6)
        while not stop.is_set():
            victims = r.choice(np.arange(1, 2001), 50, replace=False)
            idx.remove(victims.tolist())
            idx.upsert(victims, vectors[victims - 1], [("g",) if v % 2 == 0 else () for v in victims])

    def grow():
        for start in range(2001, 6001, 100):
            idx.upsert(np.arange(start, start + 100), vectors[start - 1 : start + 99], [()] * 100)

    def search():
        for i in range(200):
            q = vectors[i][None]
            for gallery in (DEFAULT_GALLERY, "g"):
                for hit in idx.search(q, gallery, 3)[0]:
                    expected = float(vectors[hit.face_id - 1] @ vectors[i])
                    if abs(hit.score - expected) > 1e-4:
                        errors.append(f"{hit} for query {i}, expected score {expected}")

    writers = [threading.Thread(target=churn), threading.Thread(target=grow)]
    readers = [threading.Thread(target=search) for _ in range(3)]
    for t in writers + readers:
        t.start()
    for t in readers + writers[1:]:
        t.join()
    stop.set()
    writers[0].join()
    assert errors == []
    assert len(idx) == 6000
    assert idx.stats().gallery_counts["g"] == 1000


def test_only_candidates_near_the_kth_are_rescored_and_the_top_k_stays_exact(rescore):
    """Of a 512-d pool of 2k + 32 candidates, those far below the k-th best cannot enter the exact top k: they
    are not read from the store. Near-duplicates (scores within the codes' error of each other) still rank as the
    exact descriptors do."""
    rng = np.random.default_rng(9)
    base = unit(rng, 4000, 512)
    # Groups of near-duplicates around the queries, closer to each other than the codes can tell apart.
    queries = unit(rng, 20, 512)
    near = np.repeat(queries, 40, axis=0) + rng.standard_normal((800, 512)).astype(np.float32) * 0.05
    vectors = np.concatenate([base, near / np.linalg.norm(near, axis=1, keepdims=True)])
    idx = Durable(512)
    idx.upsert(np.arange(1, len(vectors) + 1), vectors, [()] * len(vectors))
    asked: list[int] = []

    def counted(ids):
        asked.append(len(ids))
        return idx.exact(ids)

    alive = {i + 1: v for i, v in enumerate(vectors)}
    for q in np.concatenate([queries, unit(rng, 20, 512)]):
        hits = idx.index.search(q[None], DEFAULT_GALLERY, 10, exact=counted)[0]
        assert ids_of(hits) == reference(alive, None, q, 10, -1.0)
    if rescore == "memory":
        assert asked == []  # nothing read from the store
    else:
        assert max(asked) <= 52
        assert np.median(asked) < 30


@pytest.mark.parametrize("pool", [1, 10, 200])
def test_scoring_chosen_rows_in_runs_and_scattered_equals_scanning_them(pool, monkeypatch):
    """score_rows scores long runs of rows where they lie and gathers the rest: both must give what a scan limited
    to those rows gives, across segment boundaries too."""
    monkeypatch.setattr(rows_mod, "SEGMENT_ROWS", 128)
    rng = np.random.default_rng(12)
    rows = rows_mod.CompactRows(64)
    rows.reserve(1000)
    rows.write(0, unit(rng, 1000, 64))
    chosen = np.concatenate([np.arange(100, 140), np.arange(300, 309), [5, 7, 999], np.arange(500, 503),
                             np.arange(640, 768)])
    rng.shuffle(chosen)
    members = np.zeros(1000 // 8 + 1, np.uint8)
    np.bitwise_or.at(members, chosen >> 3, (1 << (chosen & 7)).astype(np.uint8))
    for query in unit(rng, 5, 64):
        scores, found = rows.score_rows(query, chosen, pool)
        expected_scores, expected = rows.scan(query[None], 1000, pool, members)
        keep = expected[0] >= 0
        assert len(found) == min(pool, len(chosen))
        assert set(found.tolist()) == set(expected[0][keep].tolist())
        assert np.allclose(scores, expected_scores[0][keep], atol=1e-6)
        assert list(scores) == sorted(scores, reverse=True)

