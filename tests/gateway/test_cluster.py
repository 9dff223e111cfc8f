"""The gateway over real gRPC, in front of real shards, a real extractor and SecantusDB, on the labelled photos.

Two clusters share the extractor and the MongoDB-protocol server: one with 2 shards, one with 1. Every labelled
photo is enrolled into both; identification must be as good as the descriptors allow, and the same in both.
Tests that enroll more faces remove them again, so that the shared clusters answer the same throughout.
"""
from __future__ import annotations

import hashlib
import json
import logging
import queue
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from findface_grpc.rpc import error_details
from findface_grpc.v1 import common_pb2, gateway_pb2
from tests.gateway.harness import Cluster, start_healthy
from tests.helpers import labelled_photos

log = logging.getLogger(__name__)
NONE = common_pb2.Threshold(preset=common_pb2.Threshold.PRESET_NONE)


@pytest.fixture(scope="module")
def clusters(tmp_path_factory, extractor, mongo):
    base = tmp_path_factory.mktemp("clusters")
    two, one = Cluster(base, "two", 2, extractor, mongo), Cluster(base, "one", 1, extractor, mongo)
    try:
        for c in (two, one):
            c.shards.start_tarantools()
        start_healthy(two.shards.server_items() + one.shards.server_items())
        start_healthy([(two.gateway, two.address), (one.gateway, one.address)])
        yield two, one
    finally:
        two.stop()
        one.stop()


@pytest.fixture(scope="module")
def photos(faces):
    return {name: (identity, (faces / name).read_bytes()) for name, identity in labelled_photos(faces)}


def image(data: bytes) -> common_pb2.ImageSource:
    return common_pb2.ImageSource(content=data)


def enroll_all(stub, photos) -> dict[str, gateway_pb2.CreateFaceResponse]:
    def one(item):
        name, (identity, data) = item
        return name, stub.CreateFace(gateway_pb2.CreateFaceRequest(image=image(data), meta=name, person_id=identity),
                                     timeout=60)

    with ThreadPoolExecutor(4) as pool:
        return dict(pool.map(one, sorted(photos.items())))


def identify_all(stub, photos, n=2) -> dict[str, list[tuple[str, float]]]:
    """Per photo: (meta, confidence) of its matches, best first."""
    def one(item):
        name, (_, data) = item
        reply = stub.Identify(gateway_pb2.IdentifyRequest(image=image(data), n=n, threshold=NONE), timeout=60)
        assert (reply.shards_answered, reply.partial) == (reply.shards_total, False)
        assert len(reply.results) == 1
        return name, [(m.face.meta, m.confidence) for m in reply.results[0].matches]

    with ThreadPoolExecutor(4) as pool:
        return dict(pool.map(one, sorted(photos.items())))


@pytest.fixture(scope="module")
def enrolled(clusters, photos):
    two, one = clusters
    with ThreadPoolExecutor(2) as pool:
        a, b = pool.map(lambda c: enroll_all(c.stub, photos), (two, one))
    return a, b


@pytest.fixture(scope="module")
def answers(clusters, photos, enrolled):
    two, one = clusters
    with ThreadPoolExecutor(2) as pool:
        a, b = pool.map(lambda c: identify_all(c.stub, photos), (two, one))
    return a, b


def code_of(call, *args, **kwargs) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as info:
        call(*args, **kwargs)
    return info.value.code()


def test_every_photo_is_enrolled_once_and_both_shards_hold_faces(clusters, enrolled, photos):
    two, one = clusters
    for replies in enrolled:
        assert sorted(replies) == sorted(photos)
        assert all(len(r.faces) == 1 for r in replies.values())
    ids = sorted(r.faces[0].id for r in enrolled[0].values())
    assert len(set(ids)) == len(photos)
    on_shards = [two.shards.ids(0), two.shards.ids(1)]
    assert on_shards[0] and on_shards[1]
    assert sorted(on_shards[0] + on_shards[1]) == ids
    assert sorted(one.shards.ids(0)) == sorted(r.faces[0].id for r in enrolled[1].values())


def test_face_records_carry_what_was_enrolled(clusters, enrolled, photos):
    two, _ = clusters
    name = sorted(photos)[0]
    created = enrolled[0][name].faces[0]
    got = two.stub.GetFace(gateway_pb2.GetFaceRequest(id=created.id))
    assert got == created
    assert got.meta == name and got.person_id == photos[name][0]
    assert list(got.galleries) == ["default"]
    assert got.photo_hash == hashlib.sha256(photos[name][1]).hexdigest()
    assert got.model_id == "w600k_mbf"
    assert got.bbox.x2 - got.bbox.x1 >= 50
    assert got.created_at.seconds > 0 and got.updated_at.ToDatetime() >= got.created_at.ToDatetime()


def test_leave_one_out_rank1(answers, photos):
    two, _ = answers
    correct = 0
    for name, matches in two.items():
        others = [meta for meta, _ in matches if meta != name]
        assert others, f"{name}: no match besides itself"
        correct += photos[others[0]][0] == photos[name][0]
    log.info("leave-one-out rank-1: %d/%d", correct, len(two))
    assert correct / len(two) >= 0.98, f"rank-1 {correct}/{len(two)}"
    # Each photo finds itself first, at (almost exactly) full confidence.
    assert all(matches[0][0] == name and matches[0][1] > 0.99 for name, matches in two.items())


def test_one_shard_and_two_shards_answer_the_same(answers):
    two, one = answers
    assert two.keys() == one.keys()
    for name in two:
        assert [m for m, _ in two[name]] == [m for m, _ in one[name]], name
        assert np.allclose([c for _, c in two[name]], [c for _, c in one[name]], atol=1e-5), name


def test_gallery_scoping(clusters, photos, enrolled):
    two, _ = clusters
    stub = two.stub
    by_identity: dict[str, list[str]] = {}
    for name, (identity, _) in sorted(photos.items()):
        by_identity.setdefault(identity, []).append(name)
    first, second = next(names for names in by_identity.values() if len(names) >= 3)[:2]

    gallery = stub.CreateGallery(gateway_pb2.CreateGalleryRequest(name="scope_1"))
    assert gallery.name == "scope_1" and gallery.face_count == 0
    assert code_of(stub.CreateGallery, gateway_pb2.CreateGalleryRequest(name="scope_1")) == grpc.StatusCode.ALREADY_EXISTS
    assert code_of(stub.CreateGallery, gateway_pb2.CreateGalleryRequest(name="bad name")) == grpc.StatusCode.INVALID_ARGUMENT
    assert code_of(stub.CreateGallery, gateway_pb2.CreateGalleryRequest(name="x" * 49)) == grpc.StatusCode.INVALID_ARGUMENT

    face = stub.CreateFace(gateway_pb2.CreateFaceRequest(image=image(photos[first][1]), meta="scoped",
                                                         galleries=["scope_1"])).faces[0]
    assert list(face.galleries) == ["default", "scope_1"]
    counts = {g.name: g.face_count for g in stub.ListGalleries(gateway_pb2.ListGalleriesRequest()).galleries}
    assert counts == {"default": len(photos) + 1, "scope_1": 1}

    scoped = stub.Identify(gateway_pb2.IdentifyRequest(image=image(photos[second][1]), gallery="scope_1", n=5,
                                                       threshold=NONE))
    assert [m.face.id for m in scoped.results[0].matches] == [face.id]
    everywhere = stub.Identify(gateway_pb2.IdentifyRequest(image=image(photos[second][1]), n=5, threshold=NONE))
    assert len(everywhere.results[0].matches) == 5

    assert code_of(stub.Identify, gateway_pb2.IdentifyRequest(image=image(photos[second][1]), gallery="nope")) \
        == grpc.StatusCode.NOT_FOUND
    assert code_of(stub.CreateFace, gateway_pb2.CreateFaceRequest(image=image(photos[first][1]), galleries=["nope"])) \
        == grpc.StatusCode.NOT_FOUND
    assert code_of(stub.ListFaces, gateway_pb2.ListFacesRequest(gallery="nope")) == grpc.StatusCode.NOT_FOUND

    assert stub.DeleteGallery(gateway_pb2.DeleteGalleryRequest(name="scope_1")).deleted_faces == 1
    assert code_of(stub.GetFace, gateway_pb2.GetFaceRequest(id=face.id)) == grpc.StatusCode.NOT_FOUND
    assert face.id not in two.shards.ids(0) + two.shards.ids(1)
    assert [g.name for g in stub.ListGalleries(gateway_pb2.ListGalleriesRequest()).galleries] == ["default"]
    assert code_of(stub.DeleteGallery, gateway_pb2.DeleteGalleryRequest(name="scope_1")) == grpc.StatusCode.NOT_FOUND
    assert code_of(stub.DeleteGallery, gateway_pb2.DeleteGalleryRequest(name="default")) \
        == grpc.StatusCode.INVALID_ARGUMENT


def test_update_and_delete(clusters, photos, enrolled):
    two, _ = clusters
    stub, shards = two.stub, two.shards
    name = sorted(photos)[3]
    for g in ("upd_a", "upd_b"):
        stub.CreateGallery(gateway_pb2.CreateGalleryRequest(name=g))
    face = stub.CreateFace(gateway_pb2.CreateFaceRequest(image=image(photos[name][1]), meta="before")).faces[0]
    owner = 0 if face.id in shards.ids(0) else 1

    def on_shard():
        return shards.get(owner, [face.id])[face.id]

    got = stub.UpdateFace(gateway_pb2.UpdateFaceRequest(id=face.id, meta="after", galleries_add=["upd_a", "upd_b"]))
    assert got.meta == "after" and list(got.galleries) == ["default", "upd_a", "upd_b"]
    assert got.updated_at.ToDatetime() >= face.updated_at.ToDatetime()
    assert on_shard() == ("default", "upd_a", "upd_b")
    found = stub.Identify(gateway_pb2.IdentifyRequest(image=image(photos[name][1]), gallery="upd_a", threshold=NONE))
    assert [m.face.id for m in found.results[0].matches] == [face.id]

    got = stub.UpdateFace(gateway_pb2.UpdateFaceRequest(id=face.id, galleries_remove=["upd_a"]))
    assert list(got.galleries) == ["default", "upd_b"] and got.meta == "after"
    assert on_shard() == ("default", "upd_b")
    found = stub.Identify(gateway_pb2.IdentifyRequest(image=image(photos[name][1]), gallery="upd_a", threshold=NONE))
    assert list(found.results[0].matches) == []

    got = stub.UpdateFace(gateway_pb2.UpdateFaceRequest(id=face.id, set_galleries=True, galleries_set=["upd_a"]))
    assert list(got.galleries) == ["default", "upd_a"]
    assert on_shard() == ("default", "upd_a")
    got = stub.UpdateFace(gateway_pb2.UpdateFaceRequest(id=face.id, set_galleries=True))
    assert list(got.galleries) == ["default"]
    assert on_shard() == ("default",)
    got = stub.UpdateFace(gateway_pb2.UpdateFaceRequest(id=face.id, person_id="person-7"))
    assert got.person_id == "person-7" and got.meta == "after" and list(got.galleries) == ["default"]
    assert stub.GetFace(gateway_pb2.GetFaceRequest(id=face.id)).person_id == "person-7"

    invalid = [
        gateway_pb2.UpdateFaceRequest(id=face.id, galleries_remove=["default"]),
        gateway_pb2.UpdateFaceRequest(id=face.id, galleries_add=["bad name"]),
        gateway_pb2.UpdateFaceRequest(id=face.id, set_galleries=True, galleries_add=["upd_a"]),
    ]
    for request in invalid:
        assert code_of(stub.UpdateFace, request) == grpc.StatusCode.INVALID_ARGUMENT, request
    assert code_of(stub.UpdateFace, gateway_pb2.UpdateFaceRequest(id=face.id, galleries_add=["nope"])) \
        == grpc.StatusCode.NOT_FOUND
    assert code_of(stub.UpdateFace, gateway_pb2.UpdateFaceRequest(id=10**12, meta="x")) == grpc.StatusCode.NOT_FOUND

    stub.DeleteFace(gateway_pb2.DeleteFaceRequest(id=face.id))
    assert code_of(stub.GetFace, gateway_pb2.GetFaceRequest(id=face.id)) == grpc.StatusCode.NOT_FOUND
    assert code_of(stub.DeleteFace, gateway_pb2.DeleteFaceRequest(id=face.id)) == grpc.StatusCode.NOT_FOUND
    assert face.id not in shards.ids(owner)
    for g in ("upd_a", "upd_b"):
        stub.DeleteGallery(gateway_pb2.DeleteGalleryRequest(name=g))


def test_list_faces_and_meta(clusters, enrolled, photos):
    two, _ = clusters
    stub = two.stub
    ids = sorted((r.faces[0].id for r in enrolled[0].values()), reverse=True)
    seen, max_id, pages = [], 0, []
    while True:
        page = stub.ListFaces(gateway_pb2.ListFacesRequest(max_id=max_id, limit=25))
        seen.extend(f.id for f in page.faces)
        pages.append((max_id, [f.id for f in page.faces]))
        if not page.next_max_id:
            break
        max_id = page.next_max_id
    assert seen == ids and len(pages) >= 3
    # Back from the last page with prev_max_id: the same pages, asked with the same max_ids, in reverse.
    back = []
    while True:
        page = stub.ListFaces(gateway_pb2.ListFacesRequest(max_id=max_id, limit=25))
        back.append((max_id, [f.id for f in page.faces]))
        if not page.has_prev:
            assert max_id == 0 and page.prev_max_id == 0
            break
        max_id = page.prev_max_id
    assert back == pages[::-1]
    # Nothing newer than max_id: no page before; a page with fewer newer faces than a page: the first is before it.
    assert not stub.ListFaces(gateway_pb2.ListFacesRequest(max_id=ids[0] + 1, limit=25)).has_prev
    near_top = stub.ListFaces(gateway_pb2.ListFacesRequest(max_id=ids[3], limit=25))
    assert (near_top.has_prev, near_top.prev_max_id) == (True, 0)

    name = sorted(photos)[5]
    by_meta = stub.ListFaces(gateway_pb2.ListFacesRequest(meta=name))
    assert [f.meta for f in by_meta.faces] == [name] and by_meta.next_max_id == 0
    assert list(stub.ListFaces(gateway_pb2.ListFacesRequest(meta="nobody")).faces) == []
    assert code_of(stub.ListFaces, gateway_pb2.ListFacesRequest(limit=1001)) == grpc.StatusCode.INVALID_ARGUMENT

    rows = stub.ListMeta(gateway_pb2.ListMetaRequest()).results
    assert [r.meta for r in rows] == sorted(photos)
    assert all(r.count == 1 and r.face.meta == r.meta for r in rows)


def test_import_faces(clusters, enrolled):
    two, _ = clusters
    stub = two.stub
    rng = np.random.default_rng(7)

    def descriptor(dim=512, model="w600k_mbf"):
        v = rng.normal(size=dim).astype("<f4")
        return common_pb2.Descriptor(model_id=model, dim=dim, vector=(v / np.linalg.norm(v)).astype("<f4").tobytes())

    def run(*batches):
        return list(stub.ImportFaces(iter(batches), timeout=60))

    for bad in (descriptor(dim=128), descriptor(model="sface_2021dec"),
                common_pb2.Descriptor(model_id="w600k_mbf", dim=512, vector=b"\0" * 12)):
        with pytest.raises(grpc.RpcError) as info:
            run(gateway_pb2.ImportFacesRequest(faces=[gateway_pb2.ImportFace(descriptor=descriptor()),
                                                      gateway_pb2.ImportFace(descriptor=bad)]))
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "faces[1].descriptor" in info.value.details()
    assert len(two.shards.ids(0) + two.shards.ids(1)) == len(enrolled[0])  # nothing of a refused batch landed

    batches = [gateway_pb2.ImportFacesRequest(faces=[gateway_pb2.ImportFace(descriptor=descriptor(), meta=f"imp{i}-{j}")
                                                     for j in range(n)]) for i, n in enumerate((3, 20))]
    replies = run(*batches)
    assert [len(r.ids) for r in replies] == [3, 20]
    ids = [i for r in replies for i in r.ids]
    assert ids == list(range(ids[0], ids[0] + 23))  # each batch a block, in request order
    probe = batches[1].faces[7]
    found = stub.Identify(gateway_pb2.IdentifyRequest(descriptor=probe.descriptor, n=1))
    assert found.results[0].query.bbox == common_pb2.BoundingBox()
    assert [(m.face.id, m.face.meta) for m in found.results[0].matches] == [(replies[1].ids[7], "imp1-7")]
    assert found.results[0].matches[0].confidence > 0.999
    # Nothing measured an imported descriptor's face: quality and orientation stay unknown (0).
    record = found.results[0].matches[0].face
    assert (record.quality, record.orientation) == (0, 0) and list(found.skipped) == []
    for face_id in ids:
        stub.DeleteFace(gateway_pb2.DeleteFaceRequest(id=face_id))
    assert len(two.shards.ids(0) + two.shards.ids(1)) == len(enrolled[0])


def test_import_stream_runs_two_messages_at_once_replies_in_order_and_stops_at_a_failure(clusters, enrolled):
    two, _ = clusters
    stub = two.stub
    rng = np.random.default_rng(8)
    base = len(enrolled[0])

    def message(n: int, dim: int = 512) -> gateway_pb2.ImportFacesRequest:
        v = rng.normal(size=(n, dim)).astype("<f4")
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        return gateway_pb2.ImportFacesRequest(faces=[gateway_pb2.ImportFace(
            descriptor=common_pb2.Descriptor(model_id="w600k_mbf", dim=dim, vector=x.tobytes())) for x in v])

    # Many messages: replies in request order, ids ascending from message to message.
    replies = list(stub.ImportFaces(iter([message(n) for n in (50, 7, 120, 1, 33, 64)]), timeout=120))
    assert [len(r.ids) for r in replies] == [50, 7, 120, 1, 33, 64]
    ids = [i for r in replies for i in r.ids]
    assert ids == sorted(ids) and len(set(ids)) == 275
    # A client that sends each message only after the reply to the one before (nothing is held back waiting
    # for a second message).
    outbox: queue.Queue = queue.Queue()
    outbox.put(message(5))
    answered = []
    for reply in stub.ImportFaces(iter(outbox.get, None), timeout=60):
        answered.append(reply)
        outbox.put(message(5) if len(answered) < 3 else None)
    assert [len(r.ids) for r in answered] == [5, 5, 5]
    ids += [i for r in answered for i in r.ids]
    # The second message fails: the first is enrolled, the stream ends at the error, the third (under way
    # beside the second, or not yet started) is not enrolled.
    got = []
    with pytest.raises(grpc.RpcError) as info:
        for reply in stub.ImportFaces(iter([message(40), message(3, dim=128), message(40)]), timeout=60):
            got.append(reply)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and [len(r.ids) for r in got] == [40]
    ids += list(got[0].ids)
    deadline = time.monotonic() + 10
    while len(held := two.shards.ids(0) + two.shards.ids(1)) != base + len(ids):
        # A third message that was under way rolls back its shard Adds in the background.
        assert time.monotonic() < deadline, (len(held), base + len(ids))
        time.sleep(0.05)
    assert len(ids) == 330 and set(ids) <= set(held)
    # The status counts the faces the shards hold: the third message's late Adds too, until rolled back.
    deadline = time.monotonic() + 10
    while (counted := two.stub.ClusterStatus(gateway_pb2.ClusterStatusRequest()).face_count) != base + 330:
        assert time.monotonic() < deadline, counted
        time.sleep(0.1)
    for face_id in ids:
        stub.DeleteFace(gateway_pb2.DeleteFaceRequest(id=face_id))
    assert len(two.shards.ids(0) + two.shards.ids(1)) == base


def test_verify_and_detect(clusters, photos, enrolled, faces):
    two, _ = clusters
    stub = two.stub
    by_identity: dict[str, list[str]] = {}
    for name, (identity, _) in sorted(photos.items()):
        by_identity.setdefault(identity, []).append(name)
    groups = [names for names in by_identity.values() if len(names) >= 2]
    a, b = groups[0][:2]
    c = groups[1][0]

    same = stub.Verify(gateway_pb2.VerifyRequest(image1=image(photos[a][1]), image2=image(photos[b][1])))
    assert same.verified and len(same.results) == 1 and same.results[0].confidence > 0.3
    other = stub.Verify(gateway_pb2.VerifyRequest(image1=image(photos[a][1]), image2=image(photos[c][1])))
    assert not other.verified and other.results[0].confidence < same.results[0].confidence

    enrolled_b = enrolled[0][b].faces[0]
    by_id = stub.Verify(gateway_pb2.VerifyRequest(image1=image(photos[a][1]), face_id=enrolled_b.id))
    assert by_id.results[0].confidence == pytest.approx(same.results[0].confidence, abs=1e-4)
    assert by_id.results[0].bbox2 == enrolled_b.bbox
    strict = common_pb2.Threshold(value=0.999)
    assert not stub.Verify(gateway_pb2.VerifyRequest(image1=image(photos[a][1]), face_id=enrolled_b.id,
                                                     threshold=strict)).verified

    couple = (faces / "deepface/couple.jpg").read_bytes()
    assert len(stub.Detect(gateway_pb2.FaceDetectRequest(image=image(couple))).faces) == 2
    every = stub.Verify(gateway_pb2.VerifyRequest(image1=image(couple), image2=image(couple),
                                                  mf_selector=common_pb2.MULTI_FACE_SELECTOR_ALL))
    assert len(every.results) == 4
    assert [r.confidence for r in every.results] == sorted((r.confidence for r in every.results), reverse=True)

    with pytest.raises(grpc.RpcError) as info:
        stub.Identify(gateway_pb2.IdentifyRequest(image=image(couple), mf_selector=common_pb2.MULTI_FACE_SELECTOR_REJECT))
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert len(error_details(info.value)["faces"]) == 2
    # The same boxes in the standard rich error model, relayed from the extractor by the gateway.
    [detail] = rpc_status.from_call(info.value).details
    reason = error_details_pb2.ErrorInfo()
    assert detail.Unpack(reason) and reason.reason == "TOO_MANY_FACES"
    assert json.loads(reason.metadata["faces"]) == error_details(info.value)["faces"]
    assert code_of(stub.Verify, gateway_pb2.VerifyRequest(image1=image(photos[a][1]), face_id=10**12)) \
        == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize(
    "request_, field",
    [
        # The gateway fetches photo URLs, but not from loopback unless configured to (see tests/gateway/test_photos.py).
        (gateway_pb2.IdentifyRequest(image=common_pb2.ImageSource(url="http://127.0.0.1:9/a.jpg")), "image.url"),
        (gateway_pb2.IdentifyRequest(image=common_pb2.ImageSource(content=b"not a photo")), "image"),
        (gateway_pb2.IdentifyRequest(), "image or descriptor"),
        (gateway_pb2.IdentifyRequest(image=common_pb2.ImageSource(content=b"x"), n=1001), "n must be"),
        (gateway_pb2.IdentifyRequest(image=common_pb2.ImageSource(content=b"x"), gallery="a b"), "gallery"),
        (gateway_pb2.IdentifyRequest(descriptor=common_pb2.Descriptor(model_id="w600k_mbf", dim=512, vector=b"1234"),
                                     threshold=common_pb2.Threshold(value=0.5)), "descriptor"),
        (gateway_pb2.IdentifyRequest(descriptor=common_pb2.Descriptor(model_id="w600k_mbf", dim=1, vector=b"\0\0\x80?"),
                                     threshold=common_pb2.Threshold(value=1.5)), "threshold.value"),
    ],
)
def test_bad_identify_requests_name_the_field(clusters, request_, field):
    two, _ = clusters
    with pytest.raises(grpc.RpcError) as info:
        two.stub.Identify(request_)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in info.value.details()
    # The rich error model names the field as a BadRequest, for clients that do not parse messages.
    bad = error_details_pb2.BadRequest()
    assert any(d.Unpack(bad) for d in rpc_status.from_call(info.value).details)
    assert [v.field for v in bad.field_violations] == [field.split(" ")[0]]


def test_restarted_gateway_and_shards_answer_the_same(clusters, answers, photos):
    two, _ = clusters
    two.restart()
    subset = dict(sorted(photos.items())[::6])
    again = identify_all(two.stub, subset)
    for name in subset:
        assert [m for m, _ in again[name]] == [m for m, _ in answers[0][name]]
        assert np.allclose([c for _, c in again[name]], [c for _, c in answers[0][name]], atol=1e-5)
