"""Photos as phones and browsers send them, through the legacy HTTP API: HEIC and AVIF, uploaded and by URL, find
the right person; photos that cannot be used are 400 EXTRACTION_ERROR saying why, and the server goes on."""
from __future__ import annotations

import io
import struct
import zlib

import pytest
from PIL import Image
from pillow_heif import register_heif_opener

from tests.http.harness import PhotoServer

PEOPLE = 6
# How the phone stored the photo -> the EXIF orientation that shows it upright.
TURNED = {"HEIF": (Image.Transpose.ROTATE_90, 6), "AVIF": (Image.Transpose.ROTATE_270, 8)}
EXTENSIONS = {"HEIF": "heic", "AVIF": "avif"}


def by_person(photos) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name, (identity, _) in sorted(photos.items()):
        out.setdefault(identity, []).append(name)
    return {identity: names for identity, names in out.items() if len(names) >= 2}


def phone_photo(data: bytes, fmt: str) -> bytes:
    """The photo as a phone writes it: HEIC or AVIF, pixels stored turned, an orientation that turns them back."""
    register_heif_opener()
    turn, orientation = TURNED[fmt]
    exif = Image.Exif()
    exif[0x0112] = orientation
    out = io.BytesIO()
    Image.open(io.BytesIO(data)).convert("RGB").transpose(turn).save(out, fmt, quality=85, exif=exif.tobytes())
    return out.getvalue()


@pytest.fixture(scope="module")
def enrolled(api, photos) -> dict[str, list[str]]:
    """The first JPEG of each of PEOPLE people enrolled (meta = the person); person -> their other photos."""
    people = dict(list(by_person(photos).items())[:PEOPLE])
    for identity, names in people.items():
        first = names[0]
        reply = api.post("/v1/face", form={"meta": identity},
                         files={"photo": (first.rsplit("/", 1)[-1], photos[first][1])})
        assert reply.status == 200, reply.json
    return {identity: names[1:] for identity, names in people.items()}


def best_match(reply) -> str:
    assert reply.status == 200, reply.json
    (matches,) = reply.json["results"].values()
    return matches[0]["face"]["meta"]


@pytest.mark.parametrize("fmt", ["HEIF", "AVIF"])
def test_an_uploaded_phone_photo_finds_the_person(api, photos, enrolled, fmt):
    for identity, others in enrolled.items():
        data = phone_photo(photos[others[0]][1], fmt)
        reply = api.post("/v1/identify", form={"n": "1", "threshold": "none"},
                         files={"photo": (f"IMG_0001.{EXTENSIONS[fmt].upper()}", data)})
        assert best_match(reply) == identity, (fmt, others[0])


def test_a_phone_photo_by_url_finds_the_person_and_is_detected_upright(api, photos, enrolled, tmp_path):
    identity, others = next(iter(enrolled.items()))
    (tmp_path / "photo.heic").write_bytes(phone_photo(photos[others[0]][1], "HEIF"))
    server = PhotoServer(tmp_path)
    try:
        url = server.url("photo.heic")
        assert best_match(api.post("/v1/identify", json_body={"photo": url, "n": 1, "threshold": "none"})) == identity
        detected = api.post("/v1/detect", json_body={"photo": url})
        assert detected.status == 200, detected.json
        assert detected.json["orientation"] == 1 and len(detected.json["faces"]) == 1
    finally:
        server.stop()


def png_claiming(width: int, height: int) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def tiff(photos) -> bytes:
    out = io.BytesIO()
    Image.open(io.BytesIO(photos["deepface/img1.jpg"][1])).save(out, "TIFF")
    return out.getvalue()


@pytest.mark.parametrize("case, reason", [
    ("tiff", "unsupported image format TIFF"),
    ("svg", "unsupported image format SVG"),
    ("text", "not a JPEG, PNG, WEBP, GIF, HEIC or AVIF image"),
    ("truncated", "image data is truncated or corrupt"),
    ("pixel bomb", "image has 1600000000 pixels, over the limit of 50000000 pixels"),
])
def test_a_photo_that_cannot_be_used_is_400_extraction_error(api, photos, case, reason):
    jpeg = photos["deepface/img1.jpg"][1]
    data = {
        "tiff": lambda: tiff(photos),
        "svg": lambda: b'<svg xmlns="http://www.w3.org/2000/svg" width="640" height="480"/>',
        "text": lambda: b"not a photo at all\n" * 10,
        "truncated": lambda: jpeg[: len(jpeg) // 2],
        "pixel bomb": lambda: png_claiming(40000, 40000),
    }[case]()
    reply = api.post("/v1/detect", files={"photo": ("photo.jpg", data)})
    assert reply.status == 400, reply.json
    assert reply.json["code"] == "EXTRACTION_ERROR" and reply.json["param"] == "photo"
    assert reason in reply.json["reason"]
    ok = api.post("/v1/detect", files={"photo": ("img1.jpg", jpeg)})
    assert ok.status == 200 and len(ok.json["faces"]) == 1
