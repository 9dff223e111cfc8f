"""The extractor server over real gRPC, with real models on the labelled photos of shared/faces."""
from __future__ import annotations

import io
import math
import struct
import time
import zlib
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import pytest
from PIL import Image
from pillow_heif import register_heif_opener

from findface_grpc.rpc import CHANNEL_OPTIONS, error_details
from findface_grpc.v1 import common_pb2, extractor_pb2, extractor_pb2_grpc
from tests.helpers import labelled_pairs, labelled_photos

DIMS = {"scrfd-mbf": 512, "yunet-sface": 128}
# Photos with several people, and how many faces of at least 50 px each holds. (img11_reflection.jpg is a
# mirrored photo of one person: one face, a check that mirroring does not confuse the detector.)
MULTI_FACE = {"deepface/couple.jpg": 2, "deepface/img11_reflection.jpg": 1}

# Pillow writes HEIC only with pillow-heif's plugin, as a client making them would.
register_heif_opener()


@pytest.fixture(scope="module")
def stub(extractor):
    channel = grpc.insecure_channel(extractor.address, options=CHANNEL_OPTIONS)
    yield extractor_pb2_grpc.ExtractorStub(channel)
    channel.close()


def vec(face: common_pb2.DetectedFace) -> np.ndarray:
    return np.frombuffer(face.descriptor.vector, dtype="<f4")


def read(faces, name: str) -> bytes:
    return (faces / name).read_bytes()


def jpeg(image: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="JPEG", **kw)
    return buf.getvalue()


def test_info_names_the_pack(stub, extractor):
    info = stub.Info(extractor_pb2.InfoRequest())
    assert info.model_pack == extractor.pack
    assert info.descriptor_dim == DIMS[extractor.pack]
    assert info.execution_providers[-1] == "CPUExecutionProvider"
    assert info.min_face_size == 20
    assert info.detect_min_face_size == 20


def test_each_labelled_photo_yields_exactly_one_face(stub, faces):
    """Enrollment's default (the biggest face) gives one face per labelled photo; Detect reports every face,
    and where a photo also shows bystanders (img54.jpg has two in the background) the labelled person is the
    biggest."""
    wrong = {}
    for name, _ in labelled_photos(faces):
        data = read(faces, name)
        extracted = stub.Extract(extractor_pb2.ExtractRequest(image=data))
        detected = stub.Detect(extractor_pb2.DetectRequest(image=data))
        for face in detected.faces:
            assert len(face.landmarks.points) == 5
            assert 0 < face.det_score <= 1
            assert min(face.bbox.x2 - face.bbox.x1, face.bbox.y2 - face.bbox.y1) >= 50
        if len(extracted.faces) != 1 or not detected.faces:
            wrong[name] = (len(extracted.faces), len(detected.faces))
            continue
        main = extracted.faces[0].bbox
        others = [f.bbox for f in detected.faces if f.bbox != main]
        assert len(others) == len(detected.faces) - 1, name
        for other in others:
            assert (other.x2 - other.x1) * (other.y2 - other.y1) < (main.x2 - main.x1) * (main.y2 - main.y1), name
    assert wrong == {}


@pytest.mark.parametrize("name, count", sorted(MULTI_FACE.items()))
def test_multi_face_photos_yield_all_their_faces(stub, faces, name, count):
    data = read(faces, name)
    assert len(stub.Detect(extractor_pb2.DetectRequest(image=data)).faces) == count
    every = stub.Extract(extractor_pb2.ExtractRequest(image=data, mf_selector=common_pb2.MULTI_FACE_SELECTOR_ALL))
    assert len(every.faces) == count
    biggest = stub.Extract(extractor_pb2.ExtractRequest(image=data))
    assert len(biggest.faces) == 1
    area = lambda f: (f.bbox.x2 - f.bbox.x1) * (f.bbox.y2 - f.bbox.y1)  # noqa: E731
    assert area(biggest.faces[0]) == pytest.approx(max(area(f) for f in every.faces))


def test_group_photo_yields_many_faces(stub, faces):
    reply = stub.Extract(
        extractor_pb2.ExtractRequest(
            image=read(faces, "deepface/selfie-many-people.jpg"),
            mf_selector=common_pb2.MULTI_FACE_SELECTOR_ALL,
            min_face_size=20,
        )
    )
    assert len(reply.faces) >= 5
    vectors = np.stack([vec(f) for f in reply.faces])
    sims = vectors @ vectors.T
    # Different people in one photo: no two faces should look like the same person.
    assert (sims[~np.eye(len(sims), dtype=bool)] < 0.6).all()


def test_reject_selector_refuses_several_faces_and_lists_them(stub, faces):
    with pytest.raises(grpc.RpcError) as err:
        stub.Extract(
            extractor_pb2.ExtractRequest(
                image=read(faces, "deepface/couple.jpg"), mf_selector=common_pb2.MULTI_FACE_SELECTOR_REJECT
            )
        )
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert err.value.details() == "Too many faces: 2"
    assert len(error_details(err.value)["faces"]) == 2
    single = stub.Extract(
        extractor_pb2.ExtractRequest(
            image=read(faces, "deepface/img1.jpg"), mf_selector=common_pb2.MULTI_FACE_SELECTOR_REJECT
        )
    )
    assert len(single.faces) == 1


def test_descriptors_are_unit_float32_of_the_pack(stub, faces, extractor):
    face = stub.Extract(extractor_pb2.ExtractRequest(image=read(faces, "deepface/img1.jpg"))).faces[0]
    assert face.descriptor.dim == DIMS[extractor.pack]
    assert len(face.descriptor.vector) == 4 * face.descriptor.dim
    assert np.linalg.norm(vec(face)) == pytest.approx(1.0, abs=1e-4)
    assert face.descriptor.model_id


def test_accuracy_on_labelled_pairs_and_leave_one_out(stub, faces):
    photos = labelled_photos(faces)
    requests = [extractor_pb2.ExtractRequest(image=read(faces, n), request_id=n) for n, _ in photos]
    replies = list(stub.ExtractStream(iter(requests)))
    assert [r.request_id for r in replies] == [n for n, _ in photos]
    assert all(len(r.faces) == 1 for r in replies), [r.request_id for r in replies if len(r.faces) != 1]
    emb = {r.request_id: vec(r.faces[0]) for r in replies}

    pairs = labelled_pairs(faces)
    scores = np.array([float(emb[a] @ emb[b]) for a, b, _ in pairs])
    same = np.array([s for _, _, s in pairs])
    pos, neg = scores[same], scores[~same]
    auc = ((pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()) / (len(pos) * len(neg))
    assert auc >= 0.99

    names = [n for n, _ in photos]
    ids = np.array([i for _, i in photos])
    matrix = np.stack([emb[n] for n in names])
    sims = matrix @ matrix.T
    np.fill_diagonal(sims, -np.inf)
    has_mate = np.array([(ids == ids[i]).sum() > 1 for i in range(len(ids))])
    rank1 = (ids[sims.argmax(axis=1)] == ids)[has_mate].mean()
    assert rank1 >= 0.98


def test_concurrent_requests_give_the_same_descriptors_as_sequential(stub, faces):
    names = [n for n, _ in labelled_photos(faces)][:12]
    sequential = {n: vec(stub.Extract(extractor_pb2.ExtractRequest(image=read(faces, n))).faces[0]) for n in names}
    with ThreadPoolExecutor(8) as pool:
        replies = list(pool.map(lambda n: stub.Extract(extractor_pb2.ExtractRequest(image=read(faces, n))), names * 2))
    for name, reply in zip(names * 2, replies):
        np.testing.assert_allclose(vec(reply.faces[0]), sequential[name], atol=1e-4)


def test_caller_given_box_embeds_that_face(stub, faces):
    data = read(faces, "deepface/couple.jpg")
    every = stub.Extract(extractor_pb2.ExtractRequest(image=data, mf_selector=common_pb2.MULTI_FACE_SELECTOR_ALL))
    for face in every.faces:
        boxed = stub.Extract(extractor_pb2.ExtractRequest(image=data, boxes=[face.bbox]))
        assert len(boxed.faces) == 1
        assert float(vec(boxed.faces[0]) @ vec(face)) > 0.99
    with pytest.raises(grpc.RpcError) as err:
        stub.Extract(extractor_pb2.ExtractRequest(image=data, boxes=[common_pb2.BoundingBox(x1=0, y1=0, x2=5, y2=5)]))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "no face found in box" in err.value.details()


@pytest.mark.parametrize("x2", [math.inf, -math.inf, math.nan])
def test_a_box_with_a_coordinate_that_is_not_a_number_is_refused(stub, faces, x2):
    data = read(faces, "deepface/couple.jpg")
    with pytest.raises(grpc.RpcError) as err:
        stub.Extract(extractor_pb2.ExtractRequest(image=data, boxes=[common_pb2.BoundingBox(x1=0, y1=0, x2=x2, y2=5)]))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "must be finite" in err.value.details()


def test_normalized_crop_and_thumbnail_on_request(stub, faces):
    reply = stub.Extract(
        extractor_pb2.ExtractRequest(
            image=read(faces, "deepface/img1.jpg"), return_normalized=True, return_thumbnail=True, thumbnail_size=96
        )
    )
    face = reply.faces[0]
    crop = Image.open(io.BytesIO(face.normalized))
    assert (crop.format, crop.size) == ("PNG", (112, 112))
    thumb = Image.open(io.BytesIO(face.thumbnail))
    assert thumb.format == "JPEG" and max(thumb.size) == 96
    plain = stub.Extract(extractor_pb2.ExtractRequest(image=read(faces, "deepface/img1.jpg")))
    assert plain.faces[0].normalized == b"" and plain.faces[0].thumbnail == b""


def test_exif_orientation_is_applied(stub, faces):
    original = Image.open(faces / "deepface/img1.jpg").convert("RGB")
    # Store the pixels rotated and let EXIF orientation 6 (rotate 90 CW to display) undo it.
    stored = original.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    rotated = stub.Extract(extractor_pb2.ExtractRequest(image=jpeg(stored, exif=exif.tobytes(), quality=95)))
    upright = stub.Extract(extractor_pb2.ExtractRequest(image=jpeg(original, quality=95)))
    assert (rotated.image_width, rotated.image_height) == original.size
    assert len(rotated.faces) == 1
    assert float(vec(rotated.faces[0]) @ vec(upright.faces[0])) > 0.95


@pytest.mark.parametrize("fmt, orientation", [("PNG", 1), ("WEBP", 1), ("GIF", 1), ("HEIF", 6), ("AVIF", 8)])
def test_png_webp_gif_and_phone_formats_are_accepted(stub, faces, fmt, orientation):
    """HEIC (iPhones) and AVIF (Androids, browsers) stored turned, with the orientation a phone gives them: the
    face is found upright and gives the JPEG's descriptor; the size reported is the upright photo's."""
    original = Image.open(faces / "deepface/img1.jpg").convert("RGB")
    jpeg_face = stub.Extract(extractor_pb2.ExtractRequest(image=read(faces, "deepface/img1.jpg"))).faces[0]
    exif = Image.Exif()
    exif[0x0112] = orientation
    stored = original.transpose({1: Image.Transpose.ROTATE_180, 6: Image.Transpose.ROTATE_90,
                                 8: Image.Transpose.ROTATE_270}[orientation]) if orientation != 1 else original
    buf = io.BytesIO()
    stored.save(buf, format=fmt, exif=exif.tobytes(), **({} if fmt in ("PNG", "GIF") else {"quality": 90}))
    reply = stub.Extract(extractor_pb2.ExtractRequest(image=buf.getvalue()))
    assert (reply.image_width, reply.image_height) == original.size
    assert len(reply.faces) == 1
    assert float(vec(reply.faces[0]) @ vec(jpeg_face)) > 0.9
    detected = stub.Detect(extractor_pb2.DetectRequest(image=buf.getvalue()))
    assert len(detected.faces) == 1 and detected.orientation == 1


def test_photo_without_a_face_is_an_empty_result(stub):
    rng = np.random.default_rng(0)
    noise = Image.fromarray(rng.integers(0, 255, (480, 640, 3), dtype=np.uint8))
    reply = stub.Extract(extractor_pb2.ExtractRequest(image=jpeg(noise)))
    assert list(reply.faces) == []
    assert (reply.image_width, reply.image_height) == (640, 480)


def png_header_only(width: int, height: int) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")


def bad_inputs(faces) -> dict[str, tuple[bytes, str]]:
    photo = read(faces, "deepface/img1.jpg")
    return {
        "empty": (b"", "image is empty"),
        "text": (b"hello, this is not a photo" * 10, "not a JPEG, PNG, WEBP, GIF, HEIC or AVIF image"),
        "truncated": (photo[: len(photo) // 3], "truncated or corrupt"),
        "tiff": (jpeg_to(photo, "TIFF"), "unsupported image format TIFF"),
        "svg": (b'<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64"/>', "unsupported image format SVG"),
        "zero size": (png_header_only(0, 10), ""),
        "pixel bomb": (png_header_only(60000, 60000), "pixels"),
        "over 10 MB": (photo + b"\0" * (11 * 1024 * 1024), "over the limit of"),
    }


def jpeg_to(data: bytes, fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.open(io.BytesIO(data)).save(buf, format=fmt)
    return buf.getvalue()


@pytest.mark.parametrize("case", ["empty", "text", "truncated", "tiff", "svg", "zero size", "pixel bomb",
                                  "over 10 MB"])
@pytest.mark.parametrize("method", ["Detect", "Extract"])
def test_bad_input_is_invalid_argument_and_the_server_keeps_serving(stub, faces, case, method):
    data, message = bad_inputs(faces)[case]
    request = extractor_pb2.DetectRequest(image=data) if method == "Detect" else extractor_pb2.ExtractRequest(image=data)
    with pytest.raises(grpc.RpcError) as err:
        getattr(stub, method)(request)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in err.value.details()
    assert len(stub.Detect(extractor_pb2.DetectRequest(image=read(faces, "deepface/img1.jpg"))).faces) == 1


@pytest.mark.parametrize("size", [(1, 1), (65535, 1), (1, 65535), (30000, 3)])
def test_a_photo_of_one_pixel_or_a_strip_has_no_face_and_costs_little(stub, faces, size):
    """Every detector pass sizes its buffers by the detector's input, not by the photo's long side: a 1x65535
    strip once asked for a 48 GiB padded square (YuNet) or failed on a zero-pixel resize (SCRFD)."""
    buf = io.BytesIO()
    Image.new("RGB", size, (120, 120, 120)).save(buf, format="PNG")
    started = time.perf_counter()
    detected = stub.Detect(extractor_pb2.DetectRequest(image=buf.getvalue()), timeout=30)
    extracted = stub.Extract(extractor_pb2.ExtractRequest(image=buf.getvalue()), timeout=30)
    assert time.perf_counter() - started < 10
    assert list(detected.faces) == list(extracted.faces) == []
    assert (extracted.image_width, extracted.image_height) == size
    assert len(stub.Detect(extractor_pb2.DetectRequest(image=read(faces, "deepface/img1.jpg"))).faces) == 1


def test_stream_reports_a_bad_photo_and_goes_on(stub, faces):
    good = read(faces, "deepface/img1.jpg")
    requests = [
        extractor_pb2.ExtractRequest(image=good, request_id="a"),
        extractor_pb2.ExtractRequest(image=b"junk", request_id="b"),
        extractor_pb2.ExtractRequest(image=good, request_id="c"),
    ]
    replies = list(stub.ExtractStream(iter(requests)))
    assert [r.request_id for r in replies] == ["a", "b", "c"]
    assert replies[1].error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert "not a JPEG" in replies[1].error.message
    assert len(replies[0].faces) == len(replies[2].faces) == 1
