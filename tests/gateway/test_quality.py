"""Face quality, orientation and the faces left out, through the gateway over real gRPC, with a real extractor.

One single-shard cluster of its own, with an extractor of its own that embeds faces from STRICT_MIN_FACE_SIZE
(40 px) while Detect reports them from 20 px, so that a face can be too small to use (the MongoDB-protocol server
is the package's). A sample of the labelled photos is enrolled once; tests that enroll more remove what they add.
"""
from __future__ import annotations

import io
import math
import re

import grpc
import pytest
from PIL import Image

from findface_grpc.v1 import common_pb2, gateway_pb2
from tests.gateway.conftest import PACK, require_pack
from tests.gateway.harness import STRICT_MIN_FACE_SIZE, Cluster, running_strict_extractor
from tests.helpers import face_collage, labelled_photos

NONE = common_pb2.Threshold(preset=common_pb2.Threshold.PRESET_NONE)
ALL = common_pb2.MULTI_FACE_SELECTOR_ALL
TOO_SMALL = common_pb2.SKIP_REASON_TOO_SMALL
SIZE = re.compile(r"\d+x\d+ px")  # how the extractor names a face's size in its reasons


@pytest.fixture(scope="module")
def extractor(tmp_path_factory) -> str:
    require_pack(PACK)
    with running_strict_extractor(tmp_path_factory.mktemp("extractor"), PACK) as addr:
        yield addr


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, extractor, mongo):
    c = Cluster(tmp_path_factory.mktemp("quality"), "quality", 1, extractor, mongo).start()
    yield c
    c.stop()


@pytest.fixture(scope="module")
def photos(faces):
    """A sample of the labelled photos, img1 and img2 among them: name -> bytes."""
    names = sorted({name for name, _ in labelled_photos(faces)[::6]} | {"deepface/img1.jpg", "deepface/img2.jpg"})
    return {name: (faces / name).read_bytes() for name in names}


@pytest.fixture(scope="module")
def enrolled(cluster, photos) -> dict[str, gateway_pb2.CreateFaceResponse]:
    return {name: cluster.stub.CreateFace(gateway_pb2.CreateFaceRequest(image=image(data), meta=name), timeout=60)
            for name, data in photos.items()}


def image(data: bytes) -> common_pb2.ImageSource:
    return common_pb2.ImageSource(content=data)


def box_of(msg: common_pb2.BoundingBox) -> tuple[float, float, float, float]:
    return (msg.x1, msg.y1, msg.x2, msg.y2)


def refused(call, request) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call(request, timeout=60)
    return info.value


def test_enrolled_faces_have_a_quality_and_are_upright(cluster, enrolled, photos):
    stub = cluster.stub
    for name, reply in enrolled.items():
        (face,) = reply.faces
        assert 0 < face.quality <= 1 and face.orientation == 1, name
        assert list(reply.skipped) == [], name
        assert stub.GetFace(gateway_pb2.GetFaceRequest(id=face.id)) == face
    name = "deepface/img1.jpg"
    created = enrolled[name].faces[0]
    listed = stub.ListFaces(gateway_pb2.ListFacesRequest(meta=name)).faces
    assert [(f.id, f.quality, f.orientation) for f in listed] == [(created.id, created.quality, 1)]
    detected = stub.Detect(gateway_pb2.FaceDetectRequest(image=image(photos[name])))
    assert detected.orientation == 1
    (face,) = detected.faces
    assert 0 < face.quality <= 1 and face.orientation == 1
    found = stub.Identify(gateway_pb2.IdentifyRequest(image=image(photos[name]), threshold=NONE))
    assert found.results[0].query.quality == pytest.approx(created.quality, abs=1e-3)
    assert found.results[0].matches[0].face == created and list(found.skipped) == []


def test_min_quality_refuses_a_face_under_it_and_enrolls_one_over_it(cluster, photos, enrolled):
    stub = cluster.stub
    name = "deepface/img2.jpg"
    quality = enrolled[name].faces[0].quality
    error = refused(stub.CreateFace, gateway_pb2.CreateFaceRequest(image=image(photos[name]), meta="picky",
                                                                   min_quality=0.99))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith("image: "), error.details()
    assert list(stub.ListFaces(gateway_pb2.ListFacesRequest(meta="picky")).faces) == []
    (face,) = stub.CreateFace(gateway_pb2.CreateFaceRequest(image=image(photos[name]), meta="picky",
                                                            min_quality=quality / 2)).faces
    try:
        assert face.quality == pytest.approx(quality, abs=1e-3)
    finally:
        stub.DeleteFace(gateway_pb2.DeleteFaceRequest(id=face.id))
    for bad in (1.5, -0.25, math.nan):
        error = refused(stub.CreateFace, gateway_pb2.CreateFaceRequest(image=image(photos[name]), min_quality=bad))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "min_quality" in error.details()


def test_a_face_too_small_to_recognise_is_reported_not_used(cluster, photos, enrolled):
    stub = cluster.stub
    name = "deepface/img1.jpg"
    box = box_of(enrolled[name].faces[0].bbox)
    both = image(face_collage(photos[name], box, (160, 26)))
    # Detect reports every face it finds, the small one too.
    assert len(stub.Detect(gateway_pb2.FaceDetectRequest(image=both)).faces) == 2

    created = stub.CreateFace(gateway_pb2.CreateFaceRequest(image=both, meta="collage", mf_selector=ALL))
    try:
        (face,) = created.faces
        assert face.bbox.x2 - face.bbox.x1 > 100
        (skipped,) = created.skipped
        assert skipped.reason == TOO_SMALL and SIZE.search(skipped.message), skipped
        assert skipped.face.bbox.x2 - skipped.face.bbox.x1 < STRICT_MIN_FACE_SIZE and 0 <= skipped.face.quality <= 1
        assert not skipped.face.HasField("descriptor")

        found = stub.Identify(gateway_pb2.IdentifyRequest(image=both, mf_selector=ALL, threshold=NONE))
        assert len(found.results) == 1 and [s.face.bbox for s in found.skipped] == [skipped.face.bbox]
        assert found.results[0].matches[0].face.id == face.id

        pairs = stub.Verify(gateway_pb2.VerifyRequest(image1=both, image2=both, mf_selector=ALL))
        assert len(pairs.results) == 1 and pairs.verified
        assert [s.reason for s in pairs.skipped1] == [s.reason for s in pairs.skipped2] == [TOO_SMALL]
        by_id = stub.Verify(gateway_pb2.VerifyRequest(image1=both, face_id=face.id, mf_selector=ALL))
        assert len(by_id.skipped1) == 1 and list(by_id.skipped2) == []
    finally:
        for f in created.faces:
            stub.DeleteFace(gateway_pb2.DeleteFaceRequest(id=f.id))

    # A photo whose only face is too small: nothing to enroll, and the reason says how small it is.
    small = image(face_collage(photos[name], box, (26,)))
    for selector in (common_pb2.MULTI_FACE_SELECTOR_BIGGEST, ALL):
        error = refused(stub.CreateFace, gateway_pb2.CreateFaceRequest(image=small, meta="collage",
                                                                       mf_selector=selector))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error.details().startswith("image: ") and SIZE.search(error.details()), error.details()
    assert list(stub.ListFaces(gateway_pb2.ListFacesRequest(meta="collage")).faces) == []


def test_faces_under_min_quality_are_skipped_with_all(cluster, photos, enrolled):
    stub = cluster.stub
    name = "deepface/img1.jpg"
    collage = image(face_collage(photos[name], box_of(enrolled[name].faces[0].bbox), (160, 45)))
    big, small = sorted(stub.Detect(gateway_pb2.FaceDetectRequest(image=collage)).faces,
                        key=lambda f: f.bbox.x1 - f.bbox.x2)
    assert big.quality - small.quality > 0.1, (big.quality, small.quality)  # a smaller face is a poorer one
    between = (big.quality + small.quality) / 2
    created = stub.CreateFace(gateway_pb2.CreateFaceRequest(image=collage, meta="between", mf_selector=ALL,
                                                            min_quality=between))
    try:
        (face,) = created.faces
        assert face.quality >= between and face.bbox.x2 - face.bbox.x1 > 100
        (skipped,) = created.skipped
        assert skipped.reason == common_pb2.SKIP_REASON_LOW_QUALITY and skipped.face.quality < between
        assert "min_quality" in skipped.message
    finally:
        for f in created.faces:
            stub.DeleteFace(gateway_pb2.DeleteFaceRequest(id=f.id))


def turned(data: bytes, method: Image.Transpose) -> bytes:
    out = io.BytesIO()
    Image.open(io.BytesIO(data)).transpose(method).save(out, "JPEG", quality=92)
    return out.getvalue()


def test_a_face_lying_on_its_side_is_found_with_try_rotations(cluster, photos, enrolled):
    stub = cluster.stub
    name = "deepface/img2.jpg"
    upright = enrolled[name].faces[0]
    # Turned 90 degrees counter-clockwise: it needs turning clockwise to stand up, EXIF orientation 6.
    lying = image(turned(photos[name], Image.Transpose.ROTATE_90))
    detected = stub.Detect(gateway_pb2.FaceDetectRequest(image=lying, try_rotations=True))
    assert detected.orientation == 6
    (face,) = detected.faces
    assert face.orientation == 6 and 0 < face.quality <= 1
    # The box is in the turned photo's own pixels: x there is y upright, and y there runs up from the upright
    # photo's right edge.
    width = Image.open(io.BytesIO(photos[name])).width
    x1, y1, x2, y2 = box_of(upright.bbox)
    expected = (y1, width - x2, y2, width - x1)
    assert all(abs(a - b) < 0.15 * (x2 - x1) for a, b in zip(box_of(face.bbox), expected)), (face.bbox, expected)

    found = stub.Identify(gateway_pb2.IdentifyRequest(image=lying, try_rotations=True, threshold=NONE))
    assert found.results[0].query.orientation == 6
    assert found.results[0].matches[0].face.id == upright.id and found.results[0].matches[0].confidence > 0.9
    assert stub.Verify(gateway_pb2.VerifyRequest(image1=lying, face_id=upright.id, try_rotations=True)).verified
    (face,) = stub.CreateFace(gateway_pb2.CreateFaceRequest(image=lying, meta="lying", try_rotations=True)).faces
    try:
        assert face.orientation == 6
        assert stub.GetFace(gateway_pb2.GetFaceRequest(id=face.id)).orientation == 6
    finally:
        stub.DeleteFace(gateway_pb2.DeleteFaceRequest(id=face.id))


def test_detect_carries_the_attributes_asked_for(cluster, photos):
    """img1 is a smiling woman (tests/data): the extractor's estimates pass through the gateway unchanged."""
    asked = [common_pb2.ATTRIBUTE_GENDER, common_pb2.ATTRIBUTE_EMOTIONS]
    (face,) = cluster.stub.Detect(gateway_pb2.FaceDetectRequest(image=image(photos["deepface/img1.jpg"]),
                                                                attributes=asked)).faces
    assert face.gender.gender == common_pb2.GENDER_FEMALE and face.gender.score > 0.5
    assert face.emotions[0].emotion == common_pb2.EMOTION_HAPPY and len(face.emotions) == 7
    assert not face.HasField("age")
    (plain,) = cluster.stub.Detect(gateway_pb2.FaceDetectRequest(image=image(photos["deepface/img1.jpg"]))).faces
    assert not plain.HasField("gender") and not plain.emotions
