"""Photos with an embedded colour profile decode to sRGB (findface_grpc.extractor.colour): the colours the models
expect, whatever space a phone, a camera or a print workflow stored them in.

The profiles are real ICC profiles (tests/extractor/icc.py, read by littlecms like any other); what their pixels
are in sRGB is computed there from the colour spaces' definitions, not by littlecms.
"""
from __future__ import annotations

import io
import logging
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import pytest
from PIL import Image, ImageCms

from findface_grpc.extractor import colour, imaging
from findface_grpc.rpc import CHANNEL_OPTIONS
from findface_grpc.v1 import extractor_pb2, extractor_pb2_grpc
from tests.extractor import icc
from tests.helpers import labelled_photos

PATCH = 16
# Colours of faces, hair, skies and foliage, and greys, as stored (each within the sRGB gamut once converted).
STORED = np.array([[200, 100, 50], [30, 180, 90], [128, 128, 128], [230, 180, 150], [90, 60, 40], [10, 20, 200],
                   [250, 240, 20], [60, 120, 200], [240, 200, 190], [20, 20, 20]], np.uint8)
SPACES = {
    "Display P3": (icc.display_p3, icc.P3_PRIMARIES, icc.srgb_decode),
    "Adobe RGB": (icc.adobe_rgb, icc.ADOBE_PRIMARIES, lambda v: icc.gamma_decode(v, 563 / 256)),
}
# Format -> how it is written, and how far a patch's centre may be from the exact colour after encoding.
FORMATS = {
    "JPEG": ({"quality": 95, "subsampling": 0}, 3),
    "PNG": ({}, 1),
    "WEBP": ({"lossless": True}, 1),
    "HEIF": ({"quality": 95}, 4),
    "AVIF": ({"quality": 95}, 4),
}


@pytest.fixture(autouse=True)
def fresh_transforms(monkeypatch):
    """Each test meets its profiles for the first time (what is logged once depends on it)."""
    monkeypatch.setattr(colour, "_transforms", colour._Transforms())


def encode(image: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **kw)
    return buf.getvalue()


def patches(colours: np.ndarray, mode: str = "RGB") -> Image.Image:
    """One PATCH x PATCH square of each colour, in a row."""
    return Image.fromarray(np.repeat(np.repeat(colours[None], PATCH, axis=0), PATCH, axis=1), mode)


def centres(decoded: np.ndarray) -> np.ndarray:
    return decoded[PATCH // 2, PATCH // 2::PATCH].astype(np.float64)


def decode(data: bytes, **kw) -> np.ndarray:
    return imaging.decode(data, 10**7, 10**7, **kw).image


@pytest.mark.parametrize("fmt", sorted(FORMATS))
@pytest.mark.parametrize("space", sorted(SPACES))
def test_wide_gamut_photos_decode_to_their_srgb_colours(space, fmt):
    profile, primaries, transfer = SPACES[space]
    options, tolerance = FORMATS[fmt]
    expected = icc.convert(STORED, primaries, transfer)
    decoded = centres(decode(encode(patches(STORED), fmt, icc_profile=profile(), **options)))
    assert np.abs(decoded - expected).max() <= tolerance
    # The test can tell: taken as sRGB (as before profiles were read), the stored values are far off.
    assert np.abs(STORED - expected).max() > 15


def test_a_drafted_jpeg_is_converted_too():
    colours = STORED[:4]
    photo = patches(colours).resize((2048, 512), Image.Resampling.NEAREST)
    decoded = imaging.decode(encode(photo, "JPEG", quality=95, subsampling=0, icc_profile=icc.display_p3()),
                             10**7, 10**7, draft_long_side=512)
    assert decoded.scale < 1
    height, width = decoded.image.shape[:2]
    at = decoded.image[height // 2, [width * (2 * i + 1) // 8 for i in range(4)]].astype(np.float64)
    assert np.abs(at - icc.convert(colours, icc.P3_PRIMARIES, icc.srgb_decode)).max() <= 3


def test_a_grey_photo_with_a_grey_profile_gets_its_tones():
    """Grey pixels of a linear (gamma 1) profile: mid-grey stored as 128 is half the light, sRGB's 188."""
    levels = np.array([0, 32, 64, 128, 192, 255], np.uint8)
    stored = patches(np.repeat(levels[:, None], 3, axis=1)).convert("L")
    decoded = centres(decode(encode(stored, "JPEG", quality=95, icc_profile=icc.grey(1.0))))
    expected = icc.srgb_encode(levels / 255.0)
    assert np.abs(decoded - expected[:, None]).max() <= 3
    assert (decoded[:, 0] == decoded[:, 2]).all()


def test_transparent_parts_stay_white_and_the_rest_is_converted():
    image = Image.new("RGBA", (64, 32), (0, 0, 0, 0))
    image.paste((200, 100, 50, 255), (32, 0, 64, 32))
    decoded = decode(encode(image, "PNG", icc_profile=icc.display_p3()))
    assert decoded[16, 8].tolist() == [255, 255, 255]
    expected = icc.convert(np.array([[200, 100, 50]]), icc.P3_PRIMARIES, icc.srgb_decode)[0]
    assert np.abs(decoded[16, 48] - expected).max() <= 1


def test_an_srgb_profile_leaves_the_pixels_as_they_are(faces):
    photo = Image.open(faces / "deepface/img1.jpg").convert("RGB")
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    without = decode(encode(photo, "JPEG", quality=95))
    assert np.array_equal(decode(encode(photo, "JPEG", quality=95, icc_profile=srgb)), without)


CMYK_CORNERS = np.array([(c, m, y, k) for c in (0, 1) for m in (0, 1) for y in (0, 1) for k in (0, 1)])


def test_a_cmyk_jpeg_with_a_profile_shows_the_press_colours():
    stored = patches((CMYK_CORNERS * 255).astype(np.uint8), "CMYK")
    expected = np.array([icc.press_colour(*corner) for corner in CMYK_CORNERS])
    with_profile = centres(decode(encode(stored, "JPEG", quality=95, icc_profile=icc.cmyk_press())))
    assert np.abs(with_profile - expected).max() <= 3
    # Without one, the inks are taken as ideal (cyan is 0,255,255), as before: far from this press's colours.
    without = centres(decode(encode(stored, "JPEG", quality=95)))
    cyan = CMYK_CORNERS.tolist().index([1, 0, 0, 0])
    assert np.abs(without[cyan] - (0, 255, 255)).max() <= 3
    assert np.abs(without - expected).max() > 90


def tag_past_the_end(profile: bytes, signature: bytes) -> bytes:
    """The profile with the tag table's entry for `signature` pointing far past its end."""
    at = profile.index(signature, 128)
    return profile[:at + 4] + (0x7FFF0000).to_bytes(4, "big") + profile[at + 8:]


def unusable(case: str) -> tuple[Image.Image, bytes]:
    rgb = patches(STORED)
    return {
        "a Lab profile on RGB pixels": (rgb, ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes()),
        "an RGB profile on CMYK pixels": (rgb.convert("CMYK"), icc.display_p3()),
        "an RGB profile on grey pixels": (rgb.convert("L"), icc.display_p3()),
        "random bytes": (rgb, np.random.default_rng(7).integers(0, 256, 3000, np.uint8).tobytes()),
        "a profile cut short": (rgb, icc.display_p3()[:300]),
        "a tag past the end": (rgb, tag_past_the_end(icc.display_p3(), b"rXYZ")),
    }[case]


@pytest.mark.parametrize("case", ["a Lab profile on RGB pixels", "an RGB profile on CMYK pixels",
                                  "an RGB profile on grey pixels", "random bytes", "a profile cut short",
                                  "a tag past the end"])
def test_an_unusable_profile_is_ignored_and_logged_once(case, caplog):
    image, profile = unusable(case)
    without = decode(encode(image, "JPEG", quality=95))
    with caplog.at_level(logging.DEBUG, logger=colour.__name__):
        for _ in range(3):
            assert np.array_equal(decode(encode(image, "JPEG", quality=95, icc_profile=profile)), without)
    assert [r.levelno for r in caplog.records if r.name == colour.__name__] == [logging.DEBUG]


def test_threads_share_a_profile_and_each_gets_its_own_pixels():
    """Photos are decoded in a thread pool; all of these share one transform, each with other colours."""
    rng = np.random.default_rng(3)
    photos = [rng.integers(0, 256, (1, 64, 3), np.uint8) for _ in range(16)]
    blobs = [encode(patches(p[0]), "PNG", icc_profile=icc.display_p3()) for p in photos]
    with ThreadPoolExecutor(4) as pool:
        decoded = list(pool.map(decode, blobs * 4))
    for k, image in enumerate(decoded):
        expected = icc.convert(photos[k % len(photos)][0], icc.P3_PRIMARIES, icc.srgb_decode)
        assert np.abs(centres(image) - expected).max() <= 1


def test_profiles_remembered_are_bounded(monkeypatch):
    monkeypatch.setattr(colour, "REMEMBERED", 3)
    image = patches(STORED)
    for gamma in (1.8, 2.0, 2.2, 2.4, 2.6):
        colour.to_srgb(image, icc.matrix_profile("gamma", icc.P3_PRIMARIES, gamma))
    assert len(colour._transforms._known) == 3


# ---- a real photo, the real models ----

def cosine(a, b) -> float:
    a, b = (np.frombuffer(x.descriptor.vector, dtype="<f4") for x in (a, b))
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


@pytest.fixture(scope="module")
def stub(extractor):
    channel = grpc.insecure_channel(extractor.address, options=CHANNEL_OPTIONS)
    yield extractor_pb2_grpc.ExtractorStub(channel)
    channel.close()


def test_a_photo_resaved_in_display_p3_is_the_same_person(stub, faces):
    """A labelled photo converted to Display P3 and saved with its profile, as an iPhone would have taken it:
    decoded back to (nearly) the original's pixels, and its face is the best match of the original's among the
    other people's photos."""
    name = "deepface/img1.jpg"
    original = Image.open(faces / name).convert("RGB")
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
    p3 = ImageCms.ImageCmsProfile(io.BytesIO(icc.display_p3()))
    stored = ImageCms.profileToProfile(original, srgb, p3, ImageCms.Intent.RELATIVE_COLORIMETRIC, "RGB")
    resaved = encode(stored, "JPEG", quality=95, icc_profile=icc.display_p3())
    plain = encode(original, "JPEG", quality=95)

    def off(data: bytes) -> float:
        return float(np.abs(decode(data).astype(np.int16) - decode(plain)).mean())

    # Within JPEG's own loss of the original; its P3 values taken as sRGB (as before profiles were read) are not.
    assert off(resaved) < 1.2 and off(encode(stored, "JPEG", quality=95)) > 2 * off(resaved)

    def face(data: bytes):
        (found,) = stub.Extract(extractor_pb2.ExtractRequest(image=data)).faces
        return found

    query = face(resaved)
    assert cosine(query, face(plain)) > 0.97
    labels = dict(labelled_photos(faces))
    others = [n for n in labels if labels[n] != labels[name]][:8] + [n for n in labels if labels[n] == labels[name]
                                                                    and n != name][:2]
    best = max(others, key=lambda n: cosine(query, face((faces / n).read_bytes())))
    assert labels[best] == labels[name]
