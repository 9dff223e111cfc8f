"""The search path's caches against real parts: two gateways sharing one SecantusDB database and two real shards,
the HTTP gateway in front of one of them, the real extractor.

Each gateway keeps the metadata of faces it has shown (hitcache.py) and the tokens it has checked (auth.py). What
a call through a gateway changes must be what every later search through it shows, and what every later search
through the other shows: at once when it reads the gallery's version on every search (b: hit_cache_ttl_s 0),
within hit_cache_ttl_s otherwise (a). A revoked token must stop working within token_cache_ttl_s.
"""
from __future__ import annotations

import http.client
import json
import time

import grpc
import numpy as np
import pymongo
import pytest

from findface_grpc import launch
from findface_grpc.auth import TokenStore, token_metadata
from findface_grpc.gateway.cells import CellMap
from findface_grpc.rpc import CHANNEL_OPTIONS
from findface_grpc.v1 import common_pb2, gateway_pb2, gateway_pb2_grpc
from tests.gateway.harness import ShardSet, address, face_stub, gateway_process, make_token, start_healthy

DB = "lean_search"
CELLS = 8
TOKEN_TTL = 1.0
HIT_TTL = 1.0
MODEL, DIM = "w600k_mbf", 512
NONE = common_pb2.Threshold(preset=common_pb2.Threshold.PRESET_NONE)
FACES = 40


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, extractor, mongo):
    """Two gateways (a, b) over the same shards and database; the HTTP gateway in front of a. a takes a gallery's
    version as current for HIT_TTL, b reads it on every search."""
    base = tmp_path_factory.mktemp("lean")
    shards = ShardSet(base, 2)
    listen = [address(launch.free_port()) for _ in range(2)]
    metrics = address(launch.free_port())
    gateways = [gateway_process(f"gateway-{i}", base, listen[i], shards.addresses, extractor, mongo, DB,
                                cells=CELLS, token_cache_ttl_s=TOKEN_TTL, hit_cache_ttl_s=ttl, **more)
                for i, (ttl, more) in enumerate(((HIT_TTL, {"metrics_listen": metrics}), (0, {})))]
    http_listen = address(launch.free_port())
    http = launch.python_server("http", "gateway_http.server", ["--listen", http_listen, "--gateway", listen[0]],
                                base / "http.log")
    channels = []
    try:
        shards.start_tarantools()
        start_healthy(shards.server_items())
        start_healthy(list(zip(gateways, listen)))
        http.start()
        launch.wait_http_ok(http_listen, "/health", 60, http)
        token = make_token(mongo, DB)
        stubs = []
        for addr in listen:
            channel, stub = face_stub(addr, token)
            channels.append(channel)
            stubs.append(stub)
        yield {"a": stubs[0], "b": stubs[1], "listen": listen, "http": http_listen, "shards": shards,
               "metrics": metrics}
    finally:
        for channel in channels:
            channel.close()
        http.stop()
        for g in gateways:
            g.stop()
        shards.stop()


def unit(rng: np.random.Generator, count: int) -> np.ndarray:
    v = rng.standard_normal((count, DIM), dtype=np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def descriptor(v: np.ndarray) -> common_pb2.Descriptor:
    return common_pb2.Descriptor(model_id=MODEL, dim=DIM, vector=v.astype(np.float32).tobytes())


@pytest.fixture(scope="module")
def faces(cluster):
    """FACES random faces, meta "face-<i>", spread over both shards; id -> vector."""
    vectors = unit(np.random.default_rng(14), FACES)
    request = gateway_pb2.ImportFacesRequest(faces=[
        gateway_pb2.ImportFace(descriptor=descriptor(v), meta=f"face-{i}") for i, v in enumerate(vectors)])
    ids = [i for reply in cluster["a"].ImportFaces(iter([request]), timeout=60) for i in reply.ids]
    return dict(zip(ids, vectors))


def top(stub, vector, gallery: str = "", n: int = 1) -> list[gateway_pb2.FaceRecord]:
    reply = stub.Identify(gateway_pb2.IdentifyRequest(descriptor=descriptor(vector), gallery=gallery, n=n,
                                                      threshold=NONE), timeout=30)
    assert (reply.shards_answered, reply.shards_total) == (2, 2)
    return [m.face for m in reply.results[0].matches]


def test_hits_from_both_shards_carry_their_own_metadata(cluster, faces):
    cells = CellMap.from_config(CELLS, 2, ())
    assert {cells.shard_of(i) for i in faces} == {0, 1}
    metas = {}
    for face_id, vector in faces.items():
        # Three times: the first may read the metadata, the later ones are answered from the cache.
        for stub in (cluster["a"], cluster["a"], cluster["b"]):
            [face] = top(stub, vector)
            assert face.id == face_id
            metas[face_id] = face.meta
    assert sorted(metas.values()) == sorted(f"face-{i}" for i in range(FACES))
    # n covering every face: each of them once, each with its own metadata, from both shards.
    anyone = next(iter(faces.values()))
    everything = top(cluster["b"], anyone, n=FACES)
    assert sorted(f.id for f in everything) == sorted(faces)
    assert all(f.meta == metas[f.id] for f in everything)


def metric_total(metrics: str, name: str) -> int:
    """The sum of the samples of `name` (all labels) on the /metrics of the gateway serving it at `metrics`."""
    host, _, port = metrics.rpartition(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
    finally:
        conn.close()
    return sum(int(float(line.rsplit(" ", 1)[1])) for line in text.splitlines() if line.startswith(name + "{"))


def mongo_commands(metrics: str) -> int:
    """How many MongoDB commands the gateway serving /metrics at `metrics` has sent (its command monitoring)."""
    return metric_total(metrics, "findface_mongo_command_duration_seconds_count")


def test_steady_searches_ask_mongodb_next_to_nothing(cluster, faces):
    """Once a gateway has shown the faces and read the gallery's version, a search needs no MongoDB round trip
    (before the hit cache, every identify made two: the gallery check and the hits' metadata)."""
    a = cluster["a"]
    some = list(faces.values())[20:25]
    for vector in some * 2:
        top(a, vector, n=3)
    before = mongo_commands(cluster["metrics"])
    calls = 60
    for i in range(calls):
        top(a, some[i % len(some)], n=3)
    # The gallery's version once every HIT_TTL and the token once every TOKEN_TTL, whatever the calls take; a
    # round trip a call would be 60.
    assert mongo_commands(cluster["metrics"]) - before < calls / 4


def test_a_burst_of_identifies_shares_shard_calls_and_each_gets_its_own_answer(cluster, faces):
    """Identifies that arrive while a shard's Search calls are in flight go to it together (coalesce.py); each
    must get exactly the answer it gets alone."""
    a = cluster["a"]
    vectors = list(faces.values())
    requests = [gateway_pb2.IdentifyRequest(descriptor=descriptor(v), n=3, threshold=NONE) for v in vectors]
    alone = [a.Identify(request, timeout=30) for request in requests]
    coalesced = "findface_gateway_shard_search_queries_coalesced_total"
    before = metric_total(cluster["metrics"], coalesced)
    for _ in range(3):
        pending = [a.Identify.future(request, timeout=60) for request in requests]
        for expected, reply in zip(alone, (p.result() for p in pending)):
            assert (reply.shards_answered, reply.shards_total) == (2, 2)
            got, want = reply.results[0].matches, expected.results[0].matches
            assert [m.face.id for m in got] == [m.face.id for m in want]
            assert [m.confidence for m in got] == pytest.approx([m.confidence for m in want], abs=1e-6)
    # Three bursts of FACES identifies against 2 calls at once per shard: some of them waited and went together.
    assert metric_total(cluster["metrics"], coalesced) > before


def test_an_update_through_one_gateway_is_shown_by_the_other_at_once(cluster, faces):
    a, b = cluster["a"], cluster["b"]
    face_id, vector = list(faces.items())[3]
    a.CreateGallery(gateway_pb2.CreateGalleryRequest(name="lean-g"), timeout=10)
    for round_ in range(5):
        assert top(b, vector)[0].meta in (f"face-3", f"renamed-{round_ - 1}")  # cached in b now
        a.UpdateFace(gateway_pb2.UpdateFaceRequest(id=face_id, meta=f"renamed-{round_}"), timeout=10)
        assert top(b, vector)[0].meta == f"renamed-{round_}"
        assert top(a, vector)[0].meta == f"renamed-{round_}"
    # Galleries too: in, searched there through b, out again.
    a.UpdateFace(gateway_pb2.UpdateFaceRequest(id=face_id, galleries_add=["lean-g"]), timeout=10)
    [face] = top(b, vector, "lean-g")
    assert face.id == face_id and "lean-g" in face.galleries
    assert "lean-g" in top(b, vector)[0].galleries
    a.UpdateFace(gateway_pb2.UpdateFaceRequest(id=face_id, galleries_remove=["lean-g"]), timeout=10)
    assert top(b, vector, "lean-g") == []
    assert list(top(b, vector)[0].galleries) == ["default"]


def test_a_change_through_the_other_gateway_shows_within_the_ttl(cluster, faces):
    a, b = cluster["a"], cluster["b"]
    face_id, vector = list(faces.items())[4]
    for round_ in range(3):
        assert top(a, vector)[0].id == face_id  # a knows the gallery's version now
        b.UpdateFace(gateway_pb2.UpdateFaceRequest(id=face_id, meta=f"from-b-{round_}"), timeout=10)
        changed = time.monotonic()
        while top(a, vector)[0].meta != f"from-b-{round_}":
            assert time.monotonic() - changed < HIT_TTL + 1.0, "a change through b not shown by a within the TTL"
            time.sleep(0.02)


def test_a_deleted_face_is_never_found_again(cluster, faces):
    a, b = cluster["a"], cluster["b"]
    face_id, vector = list(faces.items())[5]
    assert top(b, vector)[0].id == face_id and top(a, vector)[0].id == face_id
    a.DeleteFace(gateway_pb2.DeleteFaceRequest(id=face_id), timeout=10)
    for stub in (b, a):
        assert face_id not in [f.id for f in top(stub, vector, n=3)]


def test_a_deleted_gallery_is_not_found_and_a_new_one_of_its_name_is_empty(cluster, faces):
    a, b = cluster["a"], cluster["b"]
    face_id, vector = list(faces.items())[7]
    a.CreateGallery(gateway_pb2.CreateGalleryRequest(name="lean-d"), timeout=10)
    a.UpdateFace(gateway_pb2.UpdateFaceRequest(id=face_id, galleries_add=["lean-d"]), timeout=10)
    assert top(b, vector, "lean-d")[0].id == face_id
    assert top(a, vector, "lean-d")[0].id == face_id
    a.DeleteGallery(gateway_pb2.DeleteGalleryRequest(name="lean-d"), timeout=30)
    for stub in (a, b):
        with pytest.raises(grpc.RpcError) as info:
            top(stub, vector, "lean-d")
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
        assert info.value.details() == "gallery: gallery 'lean-d' not found"
    a.CreateGallery(gateway_pb2.CreateGalleryRequest(name="lean-d"), timeout=10)
    assert top(b, vector, "lean-d") == []
    # The face itself went with its gallery, from every gallery.
    assert face_id not in [f.id for f in top(b, vector, n=3)]


def test_changes_that_did_not_reach_their_shard_are_shown_at_once(cluster, faces):
    """With the shard away, an update and a delete are done in the metadata and left to repair on the shard,
    which, back, still answers the old gallery and the deleted face: the metadata must decide, not the cache."""
    a, b, shards = cluster["a"], cluster["b"], cluster["shards"]
    cells = CellMap.from_config(CELLS, 2, ())
    (moved, v_moved), (deleted, v_deleted) = [(i, v) for i, v in list(faces.items())[10:] if cells.shard_of(i) == 0][:2]
    a.CreateGallery(gateway_pb2.CreateGalleryRequest(name="lean-s"), timeout=10)
    a.UpdateFace(gateway_pb2.UpdateFaceRequest(id=moved, galleries_add=["lean-s"]), timeout=10)
    assert top(b, v_moved, "lean-s")[0].id == moved and top(b, v_deleted)[0].id == deleted  # cached in b
    shards.kill(0)
    a.UpdateFace(gateway_pb2.UpdateFaceRequest(id=moved, galleries_remove=["lean-s"]), timeout=30)
    a.DeleteFace(gateway_pb2.DeleteFaceRequest(id=deleted), timeout=30)
    start_healthy(shards.server_items([0]))
    assert whole(lambda: top(b, v_moved, "lean-s")) == []
    assert deleted not in [f.id for f in whole(lambda: top(b, v_deleted, n=3))]


def whole(search):
    """`search`'s answer once both shards answer it (a gateway reconnects to a restarted shard within ~1 s)."""
    deadline = time.monotonic() + 10
    while True:
        try:
            return search()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _http_identify(addr: str, token: str) -> int:
    """The status of an HTTP identify with `token` and a photo that is not one: 400 for a live token (the photo
    is refused), 401 for a revoked one (the HTTP gateway asks the gateway before it answers a bad request)."""
    host, _, port = addr.rpartition(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.request("POST", "/v1/identify", body=json.dumps({"photo": "not a photo"}),
                     headers={"Content-Type": "application/json", "Authorization": f"Token {token}"})
        return conn.getresponse().status
    finally:
        conn.close()


def test_a_revoked_token_stops_working_within_the_ttl(cluster, faces, mongo):
    client = pymongo.MongoClient(mongo, tz_aware=True)
    channels = [grpc.insecure_channel(addr, options=CHANNEL_OPTIONS) for addr in cluster["listen"]]
    try:
        store = TokenStore(client[DB])
        token = store.create("lean-revoke")
        stubs = dict(zip("ab", (gateway_pb2_grpc.FaceServiceStub(ch) for ch in channels)))
        request = gateway_pb2.IdentifyRequest(descriptor=descriptor(next(iter(faces.values()))), threshold=NONE)
        for stub in stubs.values():
            stub.Identify(request, metadata=token_metadata(token), timeout=30)  # accepted, and cached so
        assert _http_identify(cluster["http"], token) == 400
        store.revoke("lean-revoke")
        revoked_at = time.monotonic()
        refused: dict[str, float] = {}
        while len(refused) < 3 and time.monotonic() < revoked_at + TOKEN_TTL + 5:
            for name, stub in stubs.items():
                if name not in refused:
                    try:
                        stub.Identify(request, metadata=token_metadata(token), timeout=30)
                    except grpc.RpcError as exc:
                        assert exc.code() == grpc.StatusCode.UNAUTHENTICATED, exc
                        refused[name] = time.monotonic() - revoked_at
            if "http" not in refused and _http_identify(cluster["http"], token) == 401:
                refused["http"] = time.monotonic() - revoked_at
            time.sleep(0.05)
        # Within the TTL, plus the time one round of these calls takes on a loaded machine.
        assert sorted(refused) == ["a", "b", "http"] and max(refused.values()) < TOKEN_TTL + 1.0, refused
    finally:
        for channel in channels:
            channel.close()
        client.close()
