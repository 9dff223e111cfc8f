"""Pages of faces read by windows of ids (id_windows.py, face_pages.py): the same pages as one sorted query would
give, at the cost of the windows read; against SecantusDB for the store, table-driven for the pure walk."""
from __future__ import annotations

import random

import pytest

from findface_grpc.gateway import id_windows
from findface_grpc.gateway.face_docs import ACTIVE, DELETING, PENDING
from findface_grpc.gateway.face_pages import FacePageStore
from findface_grpc.gateway.metadata import MetadataStore
from tests.gateway.harness import new_face as new

# ---- the walk, over documents in memory ----


def layout(n: int, density: float, seed: int, deleted: float = 0.0) -> list[dict]:
    rng = random.Random(seed)
    return [{"_id": i, "state": DELETING if rng.random() < deleted else ACTIVE, "meta": rng.choice("ab")}
            for i in range(1, n + 1) if rng.random() < density]


class Counted:
    """A fetch over documents in memory that counts what it reads, as a MongoDB index range would serve it."""

    def __init__(self, docs: list[dict]) -> None:
        self.docs, self.read, self.calls = docs, 0, 0

    def __call__(self, lo: int, hi: int) -> list[dict]:
        found = [d for d in self.docs if lo <= d["_id"] < hi]
        self.read += len(found)
        self.calls += 1
        return found


def expected(docs, keep, start, stop, want, descending):
    inside = [d for d in docs if keep(d) and (stop <= d["_id"] < start if descending else start <= d["_id"] < stop)]
    return sorted(inside, key=lambda d: d["_id"], reverse=descending)[:want]


def active(d: dict) -> bool:
    return d["state"] == ACTIVE


@pytest.mark.parametrize("density", [1.0, 0.3, 0.01, 0.0005])
@pytest.mark.parametrize("descending", [True, False])
@pytest.mark.parametrize("want", [1, 21, 101])
def test_walk_pages_equal_a_sorted_query(density, descending, want):
    docs = layout(20_000, density, seed=int(density * 1e4) + want, deleted=0.1)
    for start in (20_001, 15_000, 9_999, 3, 1):
        stop = 0 if descending else 20_001
        fetch = Counted(docs)
        got = id_windows.page([fetch], active, start, stop, want, descending)
        assert got == expected(docs, active, start, stop, want, descending), (start, descending)
        # The cost: about the documents of the page, plus windows that grow geometrically to cover the rest.
        assert fetch.read <= 4 * want + 40, (fetch.read, want, density)
        assert fetch.calls <= 12


def test_walk_to_a_gallery_of_old_faces_takes_few_windows():
    # 1000 faces with the oldest ids, a million ids above them: the empty windows grow GROWTH_EMPTY-fold.
    docs = [{"_id": i, "state": ACTIVE} for i in range(1, 1001)]
    fetch = Counted(docs)
    got = id_windows.page([fetch], active, 1_000_001, 0, 101, True)
    assert [d["_id"] for d in got] == list(range(1000, 899, -1))
    assert fetch.calls <= 9 and fetch.read <= 1000


def test_walk_races_two_indexes_and_the_cheaper_one_answers():
    # A big gallery and a rare meta: the meta's windows find the page, having read few documents; the gallery's
    # walk stops where it is, having read no more than about as many.
    docs = [{"_id": i, "state": ACTIVE, "meta": "rare" if i % 5000 == 0 else ""} for i in range(1, 50_001)]
    by_gallery, by_meta = Counted(docs), Counted([d for d in docs if d["meta"] == "rare"])

    def keep(d):
        return active(d) and d["meta"] == "rare"

    got = id_windows.page([by_gallery, by_meta], keep, 50_001, 0, 20, True)
    assert [d["_id"] for d in got] == list(range(50_000, 0, -5000))
    assert by_meta.read == 10 and by_gallery.read <= 2 * by_meta.read + 20 + 1


def test_a_walk_of_point_lookups_costs_its_ids_and_keeps_its_windows_narrow():
    # 1 document in 50 matches: the walk widens, but no window passes max_width, and every id looked up counts.
    docs = [{"_id": i, "state": ACTIVE if i % 50 == 0 else DELETING} for i in range(1, 20_001)]
    windows = []

    def fetch(lo, hi):
        windows.append(hi - lo)
        return [d for d in docs if lo <= d["_id"] < hi]

    walk = id_windows.IdWalk(fetch, active, 20_001, 0, 30, True, id_cost=2.0, max_width=500)
    got = id_windows.race([walk])
    assert [d["_id"] for d in got] == list(range(20_000, 18_500, -50))
    assert max(windows) == 500 and sum(windows) == 20_001 - walk.frontier
    assert walk.read == sum(windows) * 3  # each id found (all of them here) and looked up


@pytest.mark.parametrize("width, covered, found, want, then", [
    (100, 100, 0, 50, 400),  # nothing found: GROWTH_EMPTY
    (100, 100, 10, 101, 911),  # 1 in 10: 91 more need about 910 ids
    (100, 100, 1, 101, 1600),  # capped at GROWTH_MAX
    (100, 100, 99, 101, 200),  # nearly there: at least GROWTH_MIN
])
def test_next_width(width, covered, found, want, then):
    assert id_windows.next_width(width, covered, found, want) == then


def test_walk_of_nothing():
    fetch = Counted([{"_id": 5, "state": ACTIVE}])
    assert id_windows.page([fetch], active, 1, 0, 10, True) == [] and fetch.calls == 1
    assert id_windows.page([fetch], active, 0, 0, 10, True) == [] and fetch.calls == 1
    assert id_windows.page([fetch], active, 10, 0, 0, True) == []


# ---- the store, on SecantusDB ----


def test_list_faces_pages_by_max_id_and_filters_meta(store, loop):
    pages = FacePageStore(store)
    first = loop.run(store.allocate_ids(5))
    faces = [new("x"), new("y"), new("x", ("default", "g")), new("x"), new("y")]
    loop.run(store.insert_faces(range(first, first + 5), faces))
    assert [f.id for f in loop.run(pages.list_faces("default", 0, 3, None))] == [first + 4, first + 3, first + 2]
    assert [f.id for f in loop.run(pages.list_faces("default", first + 2, 3, None))] == [first + 1, first]
    assert [f.id for f in loop.run(pages.list_faces("default", 0, 10, "x"))] == [first + 3, first + 2, first]
    assert [f.id for f in loop.run(pages.list_faces("g", 0, 10, None))] == [first + 2]
    rows = loop.run(pages.list_meta("default"))
    assert [(r.meta, r.count, r.face.id) for r in rows] == [("x", 3, first + 3), ("y", 2, first + 4)]
    # The faces newer than a page (max_id is exclusive, so from max_id on), oldest first.
    assert loop.run(pages.newer_ids("default", first + 1, 3, None)) == [first + 1, first + 2, first + 3]
    assert loop.run(pages.newer_ids("default", first + 1, 10, "x")) == [first + 2, first + 3]
    assert loop.run(pages.newer_ids("g", first + 3, 10, None)) == []
    loop.run(store.mark_deleting([first + 3]))
    assert loop.run(pages.newer_ids("default", first + 1, 10, "x")) == [first + 2]
    assert [(r.meta, r.count, r.face.id) for r in loop.run(pages.list_meta("default"))] == [
        ("x", 2, first + 2), ("y", 2, first + 4)]


IDS = 4000


@pytest.fixture(scope="module")
def filled(mongo, loop):
    """One store for the module's read-only tests: dropping a database takes SecantusDB seconds."""
    store = MetadataStore(mongo, "pages_spread", timeout_s=5)
    store.client.drop_database(store.db.name)
    loop.run(store.ensure_schema())
    yield store
    store.client.drop_database(store.db.name)
    store.close()


@pytest.fixture(scope="module")
def spread(filled, loop):
    """4000 ids, of which a random 2/3 hold faces: "dense" has 80% of them, "sparse" one in about 400, "mid" a
    third; meta "", "a" or (for 7) "rare"; a tenth being deleted, a few still pending (older gateways')."""
    rng = random.Random(11)
    first = loop.run(filled.allocate_ids(IDS))
    model: list[dict] = []
    ids, faces = [], []
    for i in range(first, first + IDS):
        if rng.random() > 2 / 3:
            continue
        galleries = ["default"] + [g for g, p in (("dense", 0.8), ("sparse", 1 / 400), ("mid", 1 / 3))
                                   if rng.random() < p]
        meta = rng.choice(["", "a"])
        ids.append(i)
        faces.append(new(meta, galleries))
        model.append({"_id": i, "galleries": galleries, "meta": meta, "state": ACTIVE})
    for doc in rng.sample([d for d in model if "dense" in d["galleries"]], 7):
        doc["meta"] = "rare"
        faces[ids.index(doc["_id"])] = new("rare", doc["galleries"])
    loop.run(filled.insert_faces(ids, faces))
    deleting = rng.sample(model, len(model) // 10)
    loop.run(filled.mark_deleting([d["_id"] for d in deleting]))
    for doc in deleting:
        doc["state"] = DELETING
    pending = [d for d in model if d["state"] == ACTIVE][:5]
    filled.faces.update_many({"_id": {"$in": [d["_id"] for d in pending]}}, {"$set": {"state": PENDING}})
    for doc in pending:
        doc["state"] = PENDING
    return first, model


@pytest.fixture
def pages(filled):
    return FacePageStore(filled)


def visible(model, gallery, meta=None):
    return sorted((d["_id"] for d in model if d["state"] == ACTIVE and gallery in d["galleries"]
                   and (meta is None or d["meta"] == meta)), reverse=True)


@pytest.mark.parametrize("gallery, meta, limit", [
    ("default", None, 97), ("dense", None, 40), ("sparse", None, 3), ("mid", "a", 25), ("dense", "rare", 2),
    ("dense", "", 60), ("sparse", "a", 1),
])
def test_paging_forward_and_back_over_windows(pages, loop, spread, gallery, meta, limit):
    """Every page, forward by next (max_id of the last face + the page's own), and back by the faces newer than
    it (faces.py's _prev_page), is what a sorted query over the model gives: across window boundaries, with
    deleted and pending faces inside windows, in sparse galleries and by meta."""
    want = visible(spread[1], gallery, meta)
    assert want, "the layout must give every case faces"
    seen, max_id, forward = [], 0, []
    while True:
        page = [f.id for f in loop.run(pages.list_faces(gallery, max_id, limit + 1, meta))]
        assert page == [i for i in want if not max_id or i < max_id][:limit + 1]
        forward.append(max_id)
        seen.extend(page[:limit])
        if len(page) <= limit:
            break
        max_id = page[limit - 1]
    assert seen == want
    # Back from the last page: the faces just newer than each page's max_id, oldest first.
    for max_id in forward[1:]:
        newer = loop.run(pages.newer_ids(gallery, max_id, limit + 1, meta))
        assert newer == sorted(i for i in want if i >= max_id)[:limit + 1]
    assert loop.run(pages.newer_ids(gallery, want[0] + 1, limit + 1, meta)) == []


def test_first_and_last_pages(filled, pages, loop, spread):
    first, model = spread
    dense = visible(model, "dense")
    # max_id past every id (and past what MongoDB can hold) is the first page; below the oldest face, nothing.
    assert [f.id for f in loop.run(pages.list_faces("dense", 1 << 63, 5, None))] == dense[:5]
    assert [f.id for f in loop.run(pages.list_faces("dense", 10**30, 5, None))] == dense[:5]
    assert loop.run(pages.list_faces("dense", dense[-1], 5, None)) == []
    assert [f.id for f in loop.run(pages.list_faces("dense", dense[-1] + 1, 5, None))] == [dense[-1]]
    assert loop.run(pages.list_faces("nosuch", 0, 5, None)) == []
    assert loop.run(pages.list_faces("dense", 0, 5, "nobody")) == []
    # Faces enrolled after the page was read come first on the next first page (the id counter bounds it).
    newest = loop.run(filled.allocate_ids(1))
    loop.run(filled.insert_faces([newest], [new("", ("default", "dense"))]))
    model.append({"_id": newest, "galleries": ["default", "dense"], "meta": "", "state": ACTIVE})
    assert [f.id for f in loop.run(pages.list_faces("dense", 0, 2, None))] == [newest, dense[0]]
    assert loop.run(pages.newer_ids("dense", dense[0] + 1, 5, None)) == [newest]


def test_the_reads_are_index_range_scans(filled, spread):
    """The shapes a page reads by, each an index range on SecantusDB (and on MongoDB), never a collection scan."""
    for query, index in [
        ({"galleries": "dense", "_id": {"$gte": 10, "$lt": 500}}, "galleries_1__id_-1"),
        ({"meta": "rare", "_id": {"$gte": 10, "$lt": 500}}, "meta_1__id_-1"),
        ({"galleries": "sparse"}, "galleries_1__id_-1"),
    ]:
        plan = filled.faces.find(query).explain()["queryPlanner"]["winningPlan"]
        assert plan.get("inputStage", {}).get("indexName") == index, (query, plan)


def test_an_older_gateways_meta_index_is_replaced(store, loop):
    store.faces.drop_index("meta_1__id_-1")
    store.faces.create_index("meta")
    loop.run(store.ensure_schema())
    assert {"meta_1__id_-1"} <= set(store.faces.index_information()) and "meta_1" not in store.faces.index_information()


def test_list_meta_counts_only_active_faces_of_the_gallery(pages, loop, spread):
    _, model = spread
    rows = loop.run(pages.list_meta("dense"))
    shown = [d for d in model if d["state"] == ACTIVE and "dense" in d["galleries"]]
    assert [r.meta for r in rows] == ["", "a", "rare"]
    for row in rows:
        mine = [d["_id"] for d in shown if d["meta"] == row.meta]
        assert (row.count, row.face.id) == (len(mine), max(mine))
