"""Pure parts of the extractor pipeline: face selection and its reasons, box overlap and photo decoding."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from findface_grpc.errors import InvalidArgument, InvalidImage, TooManyFaces
from findface_grpc.extractor import imaging
from findface_grpc.extractor.models.base import Detection
from findface_grpc.extractor.pipeline import MultiFace, PreparedFace, SkipReason, apply_selector, iou

LM = ((0.0, 0.0),) * 5
CROP = np.zeros((112, 112, 3), np.uint8)
MIN_SIZE = 40


def face(x1, y1, x2, y2, score=0.9, quality=0.8):
    return PreparedFace(Detection(bbox=(x1, y1, x2, y2), landmarks=LM, score=score), CROP, quality)


SMALL_SURE = face(0, 0, 60, 60, 0.99)
BIG_UNSURE = face(100, 100, 300, 300, 0.6)
TINY = face(400, 400, 425, 431)
POOR = face(500, 0, 600, 100, quality=0.2)


@pytest.mark.parametrize(
    "faces, selector, expected",
    [
        ([], MultiFace.BIGGEST, []),
        ([SMALL_SURE], MultiFace.BIGGEST, [SMALL_SURE]),
        ([SMALL_SURE, BIG_UNSURE], MultiFace.ALL, [SMALL_SURE, BIG_UNSURE]),
        ([SMALL_SURE], MultiFace.REJECT, [SMALL_SURE]),
        # A face too small to recognise is no second face for REJECT: it is reported as skipped.
        ([SMALL_SURE, TINY], MultiFace.REJECT, [SMALL_SURE]),
    ],
)
def test_selector_keeps_the_usable_faces(faces, selector, expected):
    usable, _ = apply_selector(faces, selector, MIN_SIZE, 0.0)
    assert usable == expected


def test_reject_lists_every_usable_box():
    with pytest.raises(TooManyFaces, match="Too many faces: 2") as err:
        apply_selector([SMALL_SURE, BIG_UNSURE, TINY], MultiFace.REJECT, MIN_SIZE, 0.0)
    assert err.value.details == {"faces": [[0, 0, 60, 60], [100, 100, 300, 300]]}


def test_faces_left_out_say_why_with_their_size_and_the_minimum():
    usable, skipped = apply_selector([BIG_UNSURE, TINY, POOR], MultiFace.ALL, MIN_SIZE, 0.5)
    assert usable == [BIG_UNSURE]
    assert [(s.face, s.reason) for s in skipped] == [(TINY, SkipReason.TOO_SMALL), (POOR, SkipReason.LOW_QUALITY)]
    assert "25x31 px" in skipped[0].message and "minimum of 40 px" in skipped[0].message
    assert "quality 0.20" in skipped[1].message and "min_quality 0.50" in skipped[1].message


@pytest.mark.parametrize("selector", list(MultiFace))
def test_a_photo_with_no_usable_face_is_refused_with_the_reason(selector):
    with pytest.raises(InvalidArgument, match=r"25x31 px, under the minimum of 40 px"):
        apply_selector([TINY], selector, MIN_SIZE, 0.0)


@pytest.mark.parametrize(
    "a, b, expected",
    [
        ((0, 0, 10, 10), (0, 0, 10, 10), 1.0),
        ((0, 0, 10, 10), (10, 10, 20, 20), 0.0),
        ((0, 0, 10, 10), (5, 0, 15, 10), 50 / 150),
        ((0, 0, 0, 0), (0, 0, 0, 0), 0.0),
    ],
)
def test_iou(a, b, expected):
    assert iou(a, b) == pytest.approx(expected)


def encode(image: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **kw)
    return buf.getvalue()


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "P", "CMYK"])
def test_decode_gives_rgb_whatever_the_mode(mode):
    image = Image.new(mode, (30, 20))
    fmt = "JPEG" if mode in ("RGB", "L", "CMYK") else "PNG"
    decoded = imaging.decode(encode(image, fmt), 10**7, 10**7)
    assert decoded.scale == 1.0 and (decoded.width, decoded.height) == (30, 20)
    assert decoded.image.shape == (20, 30, 3) and decoded.image.dtype == np.uint8


def test_decode_limits_are_checked_before_pixels_are_decoded():
    data = encode(Image.new("RGB", (100, 100)), "PNG")
    with pytest.raises(InvalidImage, match="over the limit of 0.0 MB"):
        imaging.decode(data, 10, 10**7)
    with pytest.raises(InvalidImage, match="100x100 = 10000 pixels, over the limit of 9999 pixels"):
        imaging.decode(data, 10**7, 9999)


def test_thumbnail_of_a_box_past_the_edges_still_works():
    image = np.zeros((50, 80, 3), np.uint8)
    thumb = Image.open(io.BytesIO(imaging.thumbnail(image, (-40, -40, 200, 200), 64)))
    assert max(thumb.size) == 64


def test_large_jpeg_is_drafted_at_reduced_size_only_when_asked():
    data = encode(Image.new("RGB", (4000, 3000), (200, 100, 50)), "JPEG")
    full = imaging.decode(data, 10**8, 10**8)
    assert full.image.shape == (3000, 4000, 3) and full.scale == 1.0
    small = imaging.decode(data, 10**8, 10**8, draft_long_side=1280)
    assert small.scale == 0.5 and small.image.shape == (1500, 2000, 3)
    png = encode(Image.new("RGB", (4000, 3000)), "PNG")
    assert imaging.decode(png, 10**8, 10**8, draft_long_side=1280).scale == 1.0


@pytest.mark.parametrize("orientation, size", [(1, (2047, 1365)), (6, (1365, 2047)), (8, (1365, 2047))])
def test_a_drafted_photo_keeps_its_true_size_whatever_libjpeg_rounds_to(orientation, size):
    exif = Image.Exif()
    exif[imaging.ORIENTATION_TAG] = orientation
    data = encode(Image.new("RGB", (2047, 1365)), "JPEG", exif=exif.tobytes())
    decoded = imaging.decode(data, 10**8, 10**8, draft_long_side=512)
    # libjpeg decodes 2047x1365 at 1/2 as 1024x683: the size is not the true size times the scale.
    assert decoded.scale == 0.5
    assert (decoded.width, decoded.height) == size
    assert decoded.image.shape[:2] == ((683, 1024) if orientation == 1 else (1024, 683))


@pytest.mark.parametrize("chunk", ["zTXt", "iTXt", "iCCP"])
def test_png_metadata_bombs_are_refused_as_bad_images(chunk):
    """64 MB of text or colour profile compressed into 65 kB: PIL refuses to inflate it, and so must we, clearly."""
    inflated = 64 << 20
    info = PngImagePlugin.PngInfo()
    if chunk == "zTXt":
        info.add_text("Comment", "A" * inflated, zip=True)
    elif chunk == "iTXt":
        info.add_itxt("Comment", "A" * inflated, zip=True)
    options = {"icc_profile": b"\0" * inflated} if chunk == "iCCP" else {"pnginfo": info}
    data = encode(Image.new("RGB", (32, 32)), "PNG", **options)
    assert len(data) < 100_000
    with pytest.raises(InvalidImage, match="metadata is too large"):
        imaging.decode(data, 10**7, 10**8)
