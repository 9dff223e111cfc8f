"""A shard dying under searches: flagged partial answers (or UNAVAILABLE, as configured), full ones once it is back.

Two gateways share one 2-shard cluster and its metadata: one configured for partial results, one for
UNAVAILABLE. The faces are imported as descriptors, so that only the search path is exercised.
"""
from __future__ import annotations

import threading
import time
from collections import Counter

import grpc
import numpy as np
import pytest

from findface_grpc import launch
from findface_grpc.gateway.cells import CellMap
from findface_grpc.v1 import common_pb2, gateway_pb2
from tests.gateway.harness import ShardSet, address, face_stub, gateway_process, make_token, start_healthy

CELLS = 8
FACES = 200
NONE = common_pb2.Threshold(preset=common_pb2.Threshold.PRESET_NONE)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, extractor, mongo):
    base = tmp_path_factory.mktemp("partial")
    shards = ShardSet(base, 2)
    lenient, strict = address(launch.free_port()), address(launch.free_port())
    gateways = [
        gateway_process(name, base, addr, shards.addresses, extractor, mongo, "partial", cells=CELLS,
                        partial_results=mode, shard_deadline_s=1.0)
        for name, addr, mode in (("lenient", lenient, "partial"), ("strict", strict, "unavailable"))
    ]
    try:
        shards.start_tarantools()
        start_healthy(shards.server_items())
        start_healthy([(gateways[0], lenient), (gateways[1], strict)])
        token = make_token(mongo, "partial")
        channels = [face_stub(lenient, token), face_stub(strict, token)]
        yield shards, channels[0][1], channels[1][1]
        for ch, _ in channels:
            ch.close()
    finally:
        for g in gateways:
            g.stop()
        shards.stop()


@pytest.fixture(scope="module")
def imported(cluster):
    _, stub, _ = cluster
    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(FACES, 512)).astype("<f4")
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    descriptors = [common_pb2.Descriptor(model_id="w600k_mbf", dim=512, vector=v.tobytes()) for v in vectors]
    request = gateway_pb2.ImportFacesRequest(faces=[gateway_pb2.ImportFace(descriptor=d) for d in descriptors])
    (reply,) = stub.ImportFaces(iter([request]), timeout=60)
    return list(reply.ids), descriptors


def search(stub, descriptor, n=FACES):
    return stub.Identify(gateway_pb2.IdentifyRequest(descriptor=descriptor, n=n, threshold=NONE), timeout=10)


def test_partial_answers_while_a_shard_is_down_and_full_ones_after(cluster, imported):
    shards, lenient, strict = cluster
    ids, descriptors = imported
    owner = CellMap.from_config(CELLS, 2).shard_of
    on_shard0 = {i for i in ids if owner(i) == 0}
    assert 0 < len(on_shard0) < len(ids)

    full = search(lenient, descriptors[0])
    assert (full.shards_answered, full.shards_total, full.partial) == (2, 2, False)
    assert len(full.results[0].matches) == FACES
    assert full.results[0].matches[0].face.id == ids[0]

    # Searches keep running on another thread while shard 1 is killed; every answer must be whole or flagged.
    replies, errors, stop = [], [], threading.Event()

    def hammer():
        k = 0
        while not stop.is_set():
            try:
                replies.append(search(lenient, descriptors[k % FACES]))
            except grpc.RpcError as exc:
                errors.append(exc)
            k += 1

    worker = threading.Thread(target=hammer)
    worker.start()
    time.sleep(0.5)
    shards.kill(1)
    time.sleep(1.0)
    stop.set()
    worker.join()
    assert errors == []
    assert any(not r.partial for r in replies) and any(r.partial for r in replies)
    for r in replies:
        if r.partial:
            assert (r.shards_answered, r.shards_total) == (1, 2)
            assert {m.face.id for m in r.results[0].matches} <= on_shard0
        else:
            assert len(r.results[0].matches) == FACES

    down = search(lenient, descriptors[1])
    assert down.partial and (down.shards_answered, down.shards_total) == (1, 2)
    assert {m.face.id for m in down.results[0].matches} == on_shard0
    with pytest.raises(grpc.RpcError) as info:
        search(strict, descriptors[1])
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "1 of 2 shards did not answer" in info.value.details()

    start_healthy(shards.server_items([1]))
    deadline = time.monotonic() + 30
    while True:
        back = search(lenient, descriptors[2])
        if not back.partial or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert (back.shards_answered, back.partial) == (2, False)
    assert len(back.results[0].matches) == FACES and back.results[0].matches[0].face.id == ids[2]
    assert not search(strict, descriptors[2]).partial


def test_cluster_status_reports_a_stopped_shard_and_still_answers(cluster, imported):
    shards, lenient, _ = cluster
    ids, _ = imported
    owner = CellMap.from_config(CELLS, 2).shard_of
    placed = Counter(owner(i) for i in ids)
    request = gateway_pb2.ClusterStatusRequest()

    up = lenient.ClusterStatus(request, timeout=10)
    assert (up.shards_live, up.shards_total) == (2, 2)
    assert [(s.index, s.address, s.live, s.error, s.shard_id) for s in up.shards] == [
        (i, shards.addresses[i], True, "", f"shard-{i}") for i in range(2)
    ]
    assert [s.face_count for s in up.shards] == [placed[0], placed[1]]
    assert [dict(s.gallery_counts) for s in up.shards] == [{"default": placed[0]}, {"default": placed[1]}]
    assert all((s.model_id, s.dim) == ("w600k_mbf", 512) and s.index_bytes > 0 and s.rss_bytes > 0 for s in up.shards)
    assert (up.face_count, up.gallery_count) == (FACES, 1)
    listed = lenient.ListGalleries(gateway_pb2.ListGalleriesRequest(), timeout=10)
    assert (listed.shards_answered, listed.shards_total, listed.partial) == (2, 2, False)
    assert [(g.name, g.face_count) for g in listed.galleries] == [("default", FACES)]
    extractor = up.extractor
    assert extractor.live and extractor.error == "" and extractor.model_pack == "scrfd-mbf"
    assert (extractor.embedder_model_id, extractor.descriptor_dim) == ("w600k_mbf", 512)
    assert extractor.detector_model_id and extractor.version and list(extractor.execution_providers)

    shards.servers[0].stop()
    try:
        started = time.monotonic()
        down = lenient.ClusterStatus(request, timeout=10)
        assert time.monotonic() - started < 5
        assert (down.shards_live, down.shards_total) == (1, 2)
        gone, alive = down.shards
        assert (gone.index, gone.address, gone.live) == (0, shards.addresses[0], False)
        assert gone.error.startswith(f"shard 0 ({shards.addresses[0]}): UNAVAILABLE"), gone.error
        assert (gone.shard_id, gone.face_count, dict(gone.gallery_counts)) == ("", 0, {})
        assert alive.live and alive.face_count == placed[1]
        # The faces counted are those of the shards that answered; the galleries come from the metadata.
        assert (down.face_count, down.gallery_count, down.extractor.live) == (placed[1], 1, True)
        listed = lenient.ListGalleries(gateway_pb2.ListGalleriesRequest(), timeout=10)
        assert (listed.shards_answered, listed.shards_total, listed.partial) == (1, 2, True)
        assert [(g.name, g.face_count) for g in listed.galleries] == [("default", placed[1])]
        names = lenient.ListGalleries(gateway_pb2.ListGalleriesRequest(names_only=True), timeout=10)
        assert [(g.name, g.face_count) for g in names.galleries] == [("default", 0)] and not names.partial
    finally:
        start_healthy(shards.server_items([0]))


def test_no_shard_at_all_is_unavailable_in_either_mode(cluster, imported):
    shards, lenient, strict = cluster
    _, descriptors = imported
    shards.kill(0)
    shards.kill(1)
    try:
        for stub in (lenient, strict):
            with pytest.raises(grpc.RpcError) as info:
                search(stub, descriptors[0])
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "no shard answered" in info.value.details()
    finally:
        start_healthy(shards.server_items())
