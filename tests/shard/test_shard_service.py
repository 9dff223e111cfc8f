"""The shard server over real gRPC, with its real Tarantool: the API, durability, restarts and outages."""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import pytest

from findface_grpc import launch
from findface_grpc.rpc import CHANNEL_OPTIONS
from findface_grpc.v1 import common_pb2, shard_pb2, shard_pb2_grpc
from tests.shard.conftest import ShardProcesses

MODEL = "test_model"
DIM = 32


def unit(rng: np.random.Generator, count: int, dim: int = DIM) -> np.ndarray:
    v = rng.standard_normal((count, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def desc(vector: np.ndarray, model: str = MODEL) -> common_pb2.Descriptor:
    vector = np.asarray(vector, dtype="<f4")
    return common_pb2.Descriptor(model_id=model, dim=len(vector), vector=vector.tobytes())


def face(face_id: int, vector: np.ndarray, galleries=(), model: str = MODEL) -> shard_pb2.ShardFace:
    return shard_pb2.ShardFace(id=face_id, galleries=list(galleries), descriptor=desc(vector, model))


def search(stub, queries, gallery="default", k=10, threshold=-1.0) -> list[list[tuple[int, float]]]:
    reply = stub.Search(
        shard_pb2.SearchRequest(queries=[desc(q) for q in queries], gallery=gallery, k=k, threshold=threshold)
    )
    return [[(h.face_id, h.score) for h in hits.hits] for hits in reply.results]


def assert_same_hits(got, expected, tolerance: float = 1e-5) -> None:
    """The same hits with the same scores, within float tolerance: another row order, CPU or BLAS kernel sums in
    another order, so the last bits differ and faces of (nearly) equal score may come in either order."""
    assert len(got) == len(expected)
    for got_hits, expected_hits in zip(got, expected):
        assert [score for _, score in got_hits] == pytest.approx([score for _, score in expected_hits], abs=tolerance)

        def ordered(hits):
            return sorted(hits, key=lambda hit: (-round(hit[1] / tolerance), hit[0]))

        assert [face_id for face_id, _ in ordered(got_hits)] == [face_id for face_id, _ in ordered(expected_hits)]


def hit_ids(results) -> list[list[int]]:
    return [[face_id for face_id, _ in hits] for hits in results]


def add_random(stub, rng, count, start=1, galleries_of=lambda i: ()) -> np.ndarray:
    vectors = unit(rng, count)
    reply = stub.Add(
        shard_pb2.AddRequest(faces=[face(start + i, v, galleries_of(start + i)) for i, v in enumerate(vectors)])
    )
    assert reply.added + reply.replaced == count
    return vectors


def code_of(call) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value.code()


def connect(address: str):
    channel = grpc.insecure_channel(address, options=CHANNEL_OPTIONS)
    return channel, shard_pb2_grpc.ShardStub(channel)


def test_add_get_search_remove(stub):
    rng = np.random.default_rng(10)
    vectors = unit(rng, 5)
    faces = [face(i + 1, v, ["a"] if i % 2 else []) for i, v in enumerate(vectors)]
    reply = stub.Add(shard_pb2.AddRequest(faces=faces))
    assert (reply.added, reply.replaced) == (5, 0)
    reply = stub.Add(shard_pb2.AddRequest(faces=[face(2, vectors[1], ["b"]), face(9, vectors[4])]))
    assert (reply.added, reply.replaced) == (1, 1)

    got = stub.Get(shard_pb2.GetRequest(ids=[2, 404, 1], include_descriptors=True)).faces
    assert [f.id for f in got] == [2, 1]
    assert list(got[0].galleries) == ["b", "default"]
    assert list(got[1].galleries) == ["default"]
    assert got[0].descriptor.model_id == MODEL and got[0].descriptor.dim == DIM
    # Stored as float16: each value within 2^-11 of itself.
    assert np.frombuffer(got[0].descriptor.vector, "<f4") == pytest.approx(vectors[1], abs=1e-3)
    assert not stub.Get(shard_pb2.GetRequest(ids=[1])).faces[0].HasField("descriptor")

    results = search(stub, vectors[[0, 3]], k=3)
    assert [r[0] for r in hit_ids(results)] == [1, 4]
    # The stored descriptor is float16: a face matches itself within float16's rounding, not float32's.
    assert results[0][0][1] == pytest.approx(1.0, abs=2e-4)
    assert all(len(r) == 3 for r in results)
    assert hit_ids(search(stub, vectors[[3]], gallery="a")) == [[4]]
    assert hit_ids(search(stub, vectors[[1]], gallery="b")) == [[2]]
    assert search(stub, vectors[[1]], gallery="nobody") == [[]]
    # Face 9 has the same vector as face 5: equal scores, lower id first.
    assert hit_ids(search(stub, vectors[[4]], k=2)) == [[5, 9]]
    assert all(s >= 0.5 for _, s in search(stub, vectors[[0]], threshold=0.5)[0])

    assert stub.Remove(shard_pb2.RemoveRequest(ids=[1, 1, 77])).removed == 1
    assert 1 not in hit_ids(search(stub, vectors[[0]]))[0]
    assert [f.id for f in stub.Get(shard_pb2.GetRequest(ids=[1, 2])).faces] == [2]


def test_update_galleries(stub):
    rng = np.random.default_rng(11)
    vectors = add_random(stub, rng, 3, galleries_of=lambda i: ["x"])
    update = stub.UpdateGalleries

    def galleries(face_id):
        return list(stub.Get(shard_pb2.GetRequest(ids=[face_id])).faces[0].galleries)

    assert update(shard_pb2.UpdateGalleriesRequest(ids=[1, 2, 404], add=["y"])).updated == 2
    assert galleries(1) == ["default", "x", "y"]
    assert update(shard_pb2.UpdateGalleriesRequest(ids=[1, 2], add=["y"])).updated == 0  # nothing changed
    assert update(shard_pb2.UpdateGalleriesRequest(ids=[1], add=["z"], remove=["x", "z", "default"])).updated == 1
    assert galleries(1) == ["default", "y"]  # remove applies after add; "default" always stays
    assert update(shard_pb2.UpdateGalleriesRequest(ids=[2, 3], add=["w"], remove=["w"], replace=True)).updated == 2
    assert galleries(2) == ["default", "w"]
    assert sorted(hit_ids(search(stub, vectors[[2]], gallery="w"))[0]) == [2, 3]
    assert search(stub, vectors[[0]], gallery="x") == [[]]
    assert hit_ids(search(stub, vectors[[0]], gallery="y")) == [[1]]
    counts = dict(stub.Stats(shard_pb2.StatsRequest()).gallery_counts)
    assert counts == {"default": 3, "y": 1, "w": 2}


def test_list_ids_pages_in_order(stub):
    rng = np.random.default_rng(12)
    ids = [5, 3, 1000, 17, 2**63 + 5]
    stub.Add(shard_pb2.AddRequest(faces=[face(i, v) for i, v in zip(ids, unit(rng, len(ids)))]))
    pages, after = [], 0
    while True:
        page = list(stub.ListIds(shard_pb2.ListIdsRequest(after_id=after, limit=2)).ids)
        if not page:
            break
        pages.append(page)
        after = page[-1]
    assert pages == [[3, 5], [17, 1000], [2**63 + 5]]


def test_stats(stub, shard):
    empty = stub.Stats(shard_pb2.StatsRequest())
    assert (empty.shard_id, empty.face_count, empty.model_id, empty.dim) == (shard.shard_id, 0, "", 0)
    add_random(stub, np.random.default_rng(13), 100, galleries_of=lambda i: ["odd"] if i % 2 else [])
    stats = stub.Stats(shard_pb2.StatsRequest())
    assert stats.face_count == 100
    assert dict(stats.gallery_counts) == {"default": 100, "odd": 50}
    assert (stats.model_id, stats.dim) == (MODEL, DIM)
    assert stats.index_bytes >= 100 * DIM * 4
    assert stats.rss_bytes > 10_000_000
    assert stats.tarantool_arena_bytes > 100 * DIM * 4


def test_the_first_add_fixes_the_model_and_others_are_refused(stub):
    rng = np.random.default_rng(14)
    v = unit(rng, 1)[0]
    assert search(stub, [v]) == [[]]  # an empty shard with no model answers nothing, whatever the query
    stub.Add(shard_pb2.AddRequest(faces=[face(1, v)]))
    other_model = shard_pb2.AddRequest(faces=[face(2, v, model="other")])
    other_dim = shard_pb2.AddRequest(faces=[face(3, unit(rng, 1, 16)[0])])
    mixed = shard_pb2.AddRequest(faces=[face(4, v), face(5, v, model="other")])
    for request in (other_model, other_dim, mixed):
        assert code_of(lambda: stub.Add(request)) == grpc.StatusCode.INVALID_ARGUMENT
    wrong_query = shard_pb2.SearchRequest(queries=[desc(v, "other")], gallery="default", k=1)
    assert code_of(lambda: stub.Search(wrong_query)) == grpc.StatusCode.INVALID_ARGUMENT
    assert stub.Stats(shard_pb2.StatsRequest()).face_count == 1  # nothing of a refused batch was stored


def test_configured_model_is_recorded_at_start_and_refuses_other_descriptors(shard):
    shard.server.stop()
    shard.env = {"FINDFACE_SHARD_MODEL_ID": "cfg_model", "FINDFACE_SHARD_DIM": "16"}
    shard.start_server()
    channel, stub = connect(shard.address)
    with channel:
        stats = stub.Stats(shard_pb2.StatsRequest())
        assert (stats.model_id, stats.dim) == ("cfg_model", 16)
        v = unit(np.random.default_rng(15), 1)[0]
        assert code_of(lambda: stub.Add(shard_pb2.AddRequest(faces=[face(1, v)]))) == grpc.StatusCode.INVALID_ARGUMENT
    # Tarantool now holds cfg_model: a server configured for another model refuses to start on it.
    shard.server.stop()
    shard.env = {"FINDFACE_SHARD_MODEL_ID": "another", "FINDFACE_SHARD_DIM": "16"}
    with pytest.raises(RuntimeError, match="holds descriptors of cfg_model/16"):
        shard.start_server()
    assert shard.server.proc.returncode == 2


def _v() -> np.ndarray:
    return unit(np.random.default_rng(16), 1)[0]


BAD_REQUESTS = {
    "k 0": ("Search", shard_pb2.SearchRequest(queries=[desc(_v())], gallery="default", k=0)),
    "k 10001": ("Search", shard_pb2.SearchRequest(queries=[desc(_v())], gallery="default", k=10001)),
    "no queries": ("Search", shard_pb2.SearchRequest(gallery="default", k=1)),
    "1025 queries": ("Search", shard_pb2.SearchRequest(queries=[desc(_v())] * 1025, gallery="default", k=1)),
    "empty gallery": ("Search", shard_pb2.SearchRequest(queries=[desc(_v())], gallery="", k=1)),
    "bad gallery": ("Search", shard_pb2.SearchRequest(queries=[desc(_v())], gallery="no spaces!", k=1)),
    "long gallery": ("Search", shard_pb2.SearchRequest(queries=[desc(_v())], gallery="g" * 49, k=1)),
    "threshold 2": ("Search", shard_pb2.SearchRequest(queries=[desc(_v())], gallery="default", k=1, threshold=2)),
    "not unit": ("Search", shard_pb2.SearchRequest(queries=[desc(_v() * 3)], gallery="default", k=1)),
    "short vector": (
        "Search",
        shard_pb2.SearchRequest(
            queries=[common_pb2.Descriptor(model_id=MODEL, dim=DIM, vector=b"\0" * 8)], gallery="default", k=1
        ),
    ),
    "no faces": ("Add", shard_pb2.AddRequest()),
    "id 0": ("Add", shard_pb2.AddRequest(faces=[face(0, _v())])),
    "no descriptor": ("Add", shard_pb2.AddRequest(faces=[shard_pb2.ShardFace(id=1)])),
    "bad gallery on add": ("Add", shard_pb2.AddRequest(faces=[face(1, _v(), ["ok", "not/ok"])])),
    "nan": ("Add", shard_pb2.AddRequest(faces=[face(1, np.full(DIM, np.nan, np.float32))])),
    "10001 faces": ("Add", shard_pb2.AddRequest(faces=[face(i + 1, _v()) for i in range(10001)])),
    "remove id 0": ("Remove", shard_pb2.RemoveRequest(ids=[3, 0])),
    "get id 0": ("Get", shard_pb2.GetRequest(ids=[0])),
    "update bad gallery": ("UpdateGalleries", shard_pb2.UpdateGalleriesRequest(ids=[1], add=["a b"])),
    "update id 0": ("UpdateGalleries", shard_pb2.UpdateGalleriesRequest(ids=[0], add=["a"])),
    "list limit 0": ("ListIds", shard_pb2.ListIdsRequest(limit=0)),
    "list limit too big": ("ListIds", shard_pb2.ListIdsRequest(limit=100001)),
}


def test_bad_requests_are_invalid_argument(stub):
    stub.Add(shard_pb2.AddRequest(faces=[face(1, _v())]))
    codes = {}
    for name, (method, request) in BAD_REQUESTS.items():
        try:
            getattr(stub, method)(request)
            codes[name] = "OK"
        except grpc.RpcError as exc:
            codes[name] = exc.code().name
            assert exc.details()
    assert codes == {name: "INVALID_ARGUMENT" for name in BAD_REQUESTS}
    assert stub.Stats(shard_pb2.StatsRequest()).face_count == 1


def test_a_restarted_shard_server_gives_the_same_answers(shard, stub):
    rng = np.random.default_rng(17)
    for start in range(1, 3001, 1000):
        add_random(stub, rng, 1000, start, galleries_of=lambda i: ["tenth"] if i % 10 == 0 else [])
    stub.Remove(shard_pb2.RemoveRequest(ids=list(range(1, 3001, 7))))
    stub.UpdateGalleries(shard_pb2.UpdateGalleriesRequest(ids=[2, 3, 4], add=["tenth"]))
    queries = unit(rng, 8)
    before = {g: search(stub, queries, g, k=20) for g in ("default", "tenth")}
    stats_before = stub.Stats(shard_pb2.StatsRequest())

    shard.server.stop()
    shard.start_server()
    channel, fresh = connect(shard.address)
    with channel:
        for gallery, results in before.items():
            assert_same_hits(search(fresh, queries, gallery, k=20), results)
        stats = fresh.Stats(shard_pb2.StatsRequest())
        assert stats.face_count == stats_before.face_count
        assert stats.gallery_counts == stats_before.gallery_counts
    assert "index rebuilt from Tarantool" in shard.server.tail(200)


def test_acknowledged_adds_survive_kill_9_of_tarantool(shard, stub):
    rng = np.random.default_rng(18)
    acknowledged = []
    for start in range(1, 2001, 500):
        add_random(stub, rng, 500, start)
        acknowledged.extend(range(start, start + 500))
    stub.Remove(shard_pb2.RemoveRequest(ids=[5, 6]))
    expected = [i for i in acknowledged if i not in (5, 6)]

    shard.tarantool.kill()
    shard.start_tarantool()
    # The same shard server reconnects by itself; Tarantool recovered every acknowledged write from its WAL.
    ids = list(stub.ListIds(shard_pb2.ListIdsRequest(after_id=0, limit=100000)).ids)
    assert ids == expected
    # And a server started afresh rebuilds the same index from it.
    shard.server.stop()
    shard.start_server()
    channel, fresh = connect(shard.address)
    with channel:
        assert fresh.Stats(shard_pb2.StatsRequest()).face_count == len(expected)


@pytest.mark.parametrize("rescore", ["memory", "tarantool"])
def test_tarantool_down_refuses_writes_but_still_answers_searches(make_shard, rescore):
    shard = make_shard(env={"FINDFACE_SHARD_RESCORE": rescore})
    channel, stub = connect(shard.address)
    with channel:
        tarantool_down_refuses_writes_but_still_answers_searches(shard, stub, rescore)


def tarantool_down_refuses_writes_but_still_answers_searches(shard, stub, rescore: str) -> None:
    rng = np.random.default_rng(19)
    vectors = add_random(stub, rng, 200)
    queries = vectors[:4]
    before = search(stub, queries)

    shard.tarantool.stop()
    late = unit(rng, 1)[0]
    for call in (
        lambda: stub.Add(shard_pb2.AddRequest(faces=[face(500, late)])),
        lambda: stub.Remove(shard_pb2.RemoveRequest(ids=[1])),
        lambda: stub.UpdateGalleries(shard_pb2.UpdateGalleriesRequest(ids=[1], add=["x"])),
        lambda: stub.Get(shard_pb2.GetRequest(ids=[1])),
        lambda: stub.ListIds(shard_pb2.ListIdsRequest(limit=10)),
    ):
        with pytest.raises(grpc.RpcError) as info:
            call()
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "Tarantool" in info.value.details()
    # Searches are answered from memory, which holds every acknowledged write: with the same scores when the rows
    # keep residuals, else with the compact rows' scores (at 32-d a code step is 1/127, so scores move by up to a
    # few thousandths).
    during = search(stub, queries)
    assert [hits[0][0] for hits in during] == [hits[0][0] for hits in before]
    tolerance = 1e-5 if rescore == "memory" else 1e-2
    for got, want in zip(during, before):
        assert [score for _, score in got] == pytest.approx([score for _, score in want], abs=tolerance)
    stats = stub.Stats(shard_pb2.StatsRequest())
    assert (stats.face_count, stats.tarantool_arena_bytes) == (200, 0)

    shard.start_tarantool()
    assert stub.Add(shard_pb2.AddRequest(faces=[face(500, late)])).added == 1
    assert hit_ids(search(stub, [late], k=1)) == [[500]]
    assert stub.Remove(shard_pb2.RemoveRequest(ids=[1])).removed == 1
    assert stub.Stats(shard_pb2.StatsRequest()).face_count == 200


def test_a_face_its_residuals_cannot_give_back_is_rescored_from_tarantool(stub):
    """A component beyond the codes' range (a spiky descriptor) leaves a residual that cannot give it back: the
    search that meets it, declined on the event loop, reads that face from Tarantool on a search thread."""
    rng = np.random.default_rng(23)
    dim = 128  # components are clipped beyond 6 / sqrt(128) = 0.53
    vectors = unit(rng, 50, dim)
    spiky = np.zeros(dim, np.float32)
    spiky[0], spiky[1] = 0.8, 0.6
    vectors[0] = spiky
    stub.Add(shard_pb2.AddRequest(faces=[face(i + 1, v) for i, v in enumerate(vectors)]))
    query = spiky + 0.05 * unit(rng, 1, dim)[0]
    query /= np.linalg.norm(query)
    hits = search(stub, [query], k=3)[0]
    stored = vectors.astype(np.float16).astype(np.float32)  # what Tarantool holds
    assert hits[0][0] == 1
    # The codes alone clip the first component to 0.53: its score would be off by about 0.2.
    for face_id, score in hits:
        assert score == pytest.approx(float(stored[face_id - 1] @ query), abs=1e-4)


def test_a_full_tarantool_refuses_the_batch_whole_with_resource_exhausted(make_shard):
    shard = make_shard(memtx_mb=64)
    channel, stub = connect(shard.address)
    rng = np.random.default_rng(21)
    acknowledged = 0
    with channel:
        for batch in range(10):
            vectors = unit(rng, 5000, 512)
            request = shard_pb2.AddRequest(faces=[face(batch * 5000 + i + 1, v) for i, v in enumerate(vectors)])
            try:
                acknowledged += stub.Add(request).added
            except grpc.RpcError as exc:
                assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                assert "out of memory" in exc.details()
                break
        else:
            pytest.fail("64 MB of memtx took 50000 512-d faces")
        assert acknowledged > 0
        # Neither Tarantool nor the index kept any face of the refused batch.
        assert len(stub.ListIds(shard_pb2.ListIdsRequest(limit=100000)).ids) == acknowledged
        assert stub.Stats(shard_pb2.StatsRequest()).face_count == acknowledged
        assert stub.Remove(shard_pb2.RemoveRequest(ids=list(range(1, 5001)))).removed == 5000


def test_concurrent_searches_match_sequential_ones(stub):
    rng = np.random.default_rng(20)
    for start in range(1, 4001, 1000):
        add_random(stub, rng, 1000, start, galleries_of=lambda i: ["small"] if i % 50 == 0 else [])
    cases = [
        (unit(rng, int(rng.integers(1, 4))), ["default", "small"][i % 2], int(rng.integers(1, 50)),
         float(rng.uniform(-0.2, 0.3)))
        for i in range(64)
    ]
    sequential = [search(stub, q, g, k, t) for q, g, k, t in cases]
    with ThreadPoolExecutor(16) as pool:
        concurrent = list(pool.map(lambda c: search(stub, *c), cases))
    # Batched queries are re-scored together: the same hits, scores equal to float rounding.
    assert [hit_ids(r) for r in concurrent] == [hit_ids(r) for r in sequential]
    for got, want in zip(concurrent, sequential):
        for hits, expected in zip(got, want):
            assert [s for _, s in hits] == pytest.approx([s for _, s in expected], abs=1e-5)


def test_the_server_waits_for_a_late_tarantool_and_gives_up_on_a_missing_one(tmp_path):
    late = ShardProcesses(tmp_path / "late")
    try:
        late.server = launch.python_server(
            "late", "findface_grpc.shard.server",
            ["--listen", late.address, "--tarantool", f"127.0.0.1:{late.tarantool_port}"], tmp_path / "late.log",
        ).start()
        time.sleep(1.5)
        assert late.server.alive
        late.start_tarantool()
        launch.wait_grpc_healthy(late.address, 30, late.server)
    finally:
        late.stop()

    missing = launch.python_server(
        "missing", "findface_grpc.shard.server",
        ["--listen", f"127.0.0.1:{launch.free_port()}", "--tarantool", f"127.0.0.1:{launch.free_port()}"],
        tmp_path / "missing.log", {"FINDFACE_SHARD_TARANTOOL_CONNECT_TIMEOUT_S": "1"},
    ).start()
    try:
        assert missing.proc.wait(30) == 1
    finally:
        missing.kill()
    assert "is unreachable" in missing.tail()


def test_sigterm_stops_the_server_cleanly(shard):
    began = time.monotonic()
    shard.server.stop()
    assert shard.server.proc.returncode == 0
    assert time.monotonic() - began < 10
