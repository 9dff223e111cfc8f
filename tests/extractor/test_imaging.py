"""Photo decoding (findface_grpc.extractor.imaging) against what arrives in the wild: each photo decodes to the
pixels it shows, upright, or is refused with InvalidImage saying why; never a crash, a hang or a huge allocation.

Photos are made here from a labelled photo (shared/faces), each encoded the way phones, browsers and editors do.
"""
from __future__ import annotations

import io
import random
import struct
import time
import zlib

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from findface_grpc import photo_formats
from findface_grpc.errors import ConfigError, InvalidImage
from findface_grpc.extractor import imaging
from findface_grpc.extractor.config import ExtractorConfig

MB = 10**7
LIMIT = 50_000_000
MAX_PIXELS_CEILING_MP = imaging.MAX_PIXELS_CEILING // 10**6


def encode(image: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **kw)
    return buf.getvalue()


def decode(data: bytes, **kw) -> imaging.Decoded:
    return imaging.decode(data, MB, LIMIT, **kw)


def difference(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference per channel value, 0-255."""
    assert a.shape == b.shape
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def exif(orientation) -> bytes:
    e = Image.Exif()
    e[imaging.ORIENTATION_TAG] = orientation
    return e.tobytes()


def raw_exif(tag_type: int, count: int, value: bytes) -> bytes:
    """An EXIF block whose only entry is an orientation of any TIFF type, as broken writers make them."""
    ifd = struct.pack(">HHHI", 1, imaging.ORIENTATION_TAG, tag_type, count) + value.ljust(4, b"\0") + b"\0" * 4
    return b"Exif\0\0MM\0*\0\0\0\x08" + ifd


def png(width: int, height: int, depth: int, color_type: int, rows: bytes) -> bytes:
    """A PNG written chunk by chunk: sizes and bit depths Pillow's encoder will not write."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, depth, color_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(rows, 9)) + chunk(b"IEND", b"")


def png16(pixels: np.ndarray, color_type: int) -> bytes:
    height, width = pixels.shape[:2]
    big_endian = pixels.astype(">u2").reshape(height, -1)
    return png(width, height, 16, color_type, b"".join(b"\0" + row.tobytes() for row in big_endian))


def ycck_jpeg(image: Image.Image) -> bytes:
    """A JPEG as Photoshop writes CMYK: Adobe marker, transform 2 (YCCK), components inverted. Pillow writes only
    plain (transform 0) CMYK, so its components are made YCCK here and the marker's transform byte set."""
    cmyk = np.asarray(image.convert("CMYK")).astype(np.int32)
    ycc = np.asarray(Image.fromarray(cmyk[..., :3].astype(np.uint8)).convert("YCbCr")).astype(np.int32)
    stored = np.dstack([ycc, 255 - cmyk[..., 3]])
    # Pillow inverts CMYK as it writes (the Adobe convention), so give it the inverse of what is to be stored.
    data = bytearray(encode(Image.fromarray((255 - stored).astype(np.uint8), "CMYK"), "JPEG", quality=95))
    adobe = data.index(b"Adobe")
    data[adobe + 11] = 2
    return bytes(data)


@pytest.fixture(scope="module")
def photo(faces) -> Image.Image:
    """A labelled face photo, small enough for quick pixel comparisons (240x324)."""
    return Image.open(faces / "deepface/img1.jpg").convert("RGB").resize((240, 324), Image.Resampling.BILINEAR)


def lossy_forms(photo: Image.Image) -> dict[str, tuple[bytes, float]]:
    """What users send -> (bytes, the largest mean difference from the photo's pixels that is still it)."""
    pixels = np.asarray(photo)
    return {
        "JPEG": (encode(photo, "JPEG", quality=95), 3),
        "progressive JPEG": (encode(photo, "JPEG", quality=95, progressive=True), 3),
        "MPO (portrait mode)": (encode(photo, "MPO", quality=95, save_all=True,
                                       append_images=[Image.new("RGB", photo.size, (0, 0, 255))]), 3),
        "CMYK JPEG (Adobe)": (encode(photo.convert("CMYK"), "JPEG", quality=95), 3),
        "YCCK JPEG (Adobe)": (ycck_jpeg(photo), 3),
        "PNG": (encode(photo, "PNG"), 0),
        "16-bit RGB PNG": (png16(pixels.astype(np.uint16) * 257, 2), 0),
        "WEBP": (encode(photo, "WEBP", quality=95), 4),
        "GIF": (encode(photo, "GIF"), 12),
        "HEIC": (encode(photo, "HEIF", quality=95), 4),
        "AVIF": (encode(photo, "AVIF", quality=95), 4),
    }


@pytest.mark.parametrize("form", ["JPEG", "progressive JPEG", "MPO (portrait mode)", "CMYK JPEG (Adobe)",
                                  "YCCK JPEG (Adobe)", "PNG", "16-bit RGB PNG", "WEBP", "GIF", "HEIC", "AVIF"])
def test_each_form_decodes_to_the_photo(photo, form):
    data, tolerance = lossy_forms(photo)[form]
    decoded = decode(data)
    assert (decoded.width, decoded.height, decoded.scale) == (240, 324, 1.0)
    assert decoded.image.dtype == np.uint8 and decoded.image.shape == (324, 240, 3)
    assert difference(decoded.image, np.asarray(photo)) <= tolerance + 0.5


def test_a_plain_cmyk_jpeg_is_not_taken_for_ycck(photo):
    """The transform byte decides: the same components read the other way would give another picture."""
    ycck = bytearray(ycck_jpeg(photo))
    ycck[ycck.index(b"Adobe") + 11] = 0
    assert difference(decode(bytes(ycck)).image, np.asarray(photo)) > 30


def test_16_bit_grey_keeps_its_tones(photo):
    grey = np.asarray(photo.convert("L"))
    decoded = decode(png16(grey.astype(np.uint16) * 256 + 200, 0))
    assert np.array_equal(decoded.image[..., 0], grey)
    assert (decoded.image[..., 0] == decoded.image[..., 2]).all()


@pytest.mark.parametrize("fmt", ["PNG", "WEBP", "AVIF"])
@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_transparent_parts_are_laid_on_white(fmt, mode):
    """A cut-out portrait: the hidden colour of fully transparent pixels (black here) must not show."""
    image = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    image.paste((200, 40, 40, 255), (16, 16, 48, 48))
    image.paste((0, 0, 0, 128), (0, 0, 8, 8))
    decoded = decode(encode(image.convert(mode), fmt, **({"lossless": True} if fmt == "WEBP" else {}))).image
    assert decoded[60, 60].tolist() == [255, 255, 255]
    assert abs(int(decoded[2, 2, 0]) - 127) <= 3  # half-transparent black on white
    inner = (200, 40, 40) if mode == "RGBA" else (round(0.299 * 200 + 0.587 * 40 + 0.114 * 40),) * 3
    assert np.abs(decoded[32, 32].astype(int) - inner).max() <= 3


def test_palette_png_with_a_transparent_colour_is_laid_on_white():
    image = Image.new("P", (32, 32), 1)
    image.putpalette([0, 0, 0, 10, 200, 10] + [0, 0, 0] * 254)
    image.paste(0, (0, 0, 16, 32))
    decoded = decode(encode(image, "PNG", transparency=0)).image
    assert decoded[5, 5].tolist() == [255, 255, 255] and decoded[5, 25].tolist() == [10, 200, 10]


@pytest.mark.parametrize("fmt", ["GIF", "WEBP"])
def test_of_an_animation_the_first_frame(fmt):
    frames = [Image.new("RGB", (40, 30), colour) for colour in ((220, 20, 20), (20, 20, 220), (20, 220, 20))]
    data = encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert Image.open(io.BytesIO(data)).n_frames == 3
    assert np.abs(decode(data).image[15, 20].astype(int) - (220, 20, 20)).max() <= 8


def test_of_a_multi_picture_jpeg_the_first_picture(photo):
    data = lossy_forms(photo)["MPO (portrait mode)"][0]
    assert Image.open(io.BytesIO(data)).format == "MPO"
    assert difference(decode(data).image, np.asarray(photo)) <= 3.5


# EXIF orientation -> what turns the upright photo into the stored pixels (the inverse of what shows them upright).
STORED_AS = {
    1: None,
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


@pytest.mark.parametrize("orientation", sorted(STORED_AS))
def test_every_exif_orientation_mirrored_or_turned_shows_the_photo_upright(photo, orientation):
    stored = photo.transpose(STORED_AS[orientation]) if STORED_AS[orientation] is not None else photo
    decoded = decode(encode(stored, "PNG", exif=exif(orientation)))
    assert (decoded.width, decoded.height) == photo.size
    assert np.array_equal(decoded.image, np.asarray(photo))


def png_chunks(data: bytes) -> list[bytes]:
    chunks, at = [], 8
    while at < len(data):
        length = struct.unpack(">I", data[at:at + 4])[0]
        chunks.append(data[at:at + 12 + length])
        at += 12 + length
    return chunks


def test_a_png_with_its_exif_after_the_pixels_is_turned_too(photo):
    """PNG allows the eXIf chunk after the image data, where some tools write it: it is read after decoding."""
    data = encode(photo.transpose(Image.Transpose.ROTATE_90), "PNG", exif=exif(6))
    chunks = png_chunks(data)
    exif_chunk = next(c for c in chunks if c[4:8] == b"eXIf")
    rest = [c for c in chunks if c is not exif_chunk]
    moved = data[:8] + b"".join(rest[:-1]) + exif_chunk + rest[-1]
    assert moved.index(b"eXIf") > moved.index(b"IDAT")
    decoded = decode(moved)
    assert (decoded.width, decoded.height) == photo.size
    assert np.array_equal(decoded.image, np.asarray(photo))


@pytest.mark.parametrize("fmt", ["JPEG", "HEIF", "AVIF"])
@pytest.mark.parametrize("orientation", [2, 5, 6, 7, 8])
def test_phone_formats_apply_their_orientation(photo, fmt, orientation):
    """HEIC carries it as rotation and mirroring of its own (pillow-heif writes the EXIF tag as those), AVIF and
    JPEG as the EXIF tag: either way the photo comes out upright."""
    stored = photo.transpose(STORED_AS[orientation])
    decoded = decode(encode(stored, fmt, quality=95, exif=exif(orientation)))
    assert (decoded.width, decoded.height) == photo.size
    assert difference(decoded.image, np.asarray(photo)) <= 4.5


@pytest.mark.parametrize("orientation", [
    exif(0), exif(9), exif(65535), raw_exif(2, 4, b"six\0"), raw_exif(5, 1, b"\0\0\0\x40"),
    b"Exif\0\0MM\0*\0\0\xff\xff", b"Exif\0\0II*\0\x08\0\0\0\xff\xff\x12\x01",
], ids=["0", "9", "65535", "ascii", "offset past the end", "IFD past the end", "IFD cut short"])
@pytest.mark.filterwarnings("ignore:Corrupt EXIF data:UserWarning", "ignore:Truncated File Read:UserWarning")
def test_an_unusable_orientation_leaves_the_photo_as_stored(photo, orientation):
    decoded = decode(encode(photo, "JPEG", quality=95, exif=orientation))
    assert (decoded.width, decoded.height) == photo.size
    assert difference(decoded.image, np.asarray(photo)) <= 3


def test_one_pixel_is_a_photo():
    decoded = decode(encode(Image.new("RGB", (1, 1), (9, 8, 7)), "PNG"))
    assert decoded.image.tolist() == [[[9, 8, 7]]] and (decoded.width, decoded.height) == (1, 1)


def svg() -> bytes:
    return b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="9" height="9"><rect/></svg>'


@pytest.mark.parametrize("case, message", [
    ("zero bytes", "image is empty"),
    ("text renamed .jpg", "not a JPEG, PNG, WEBP, GIF, HEIC or AVIF image"),
    ("JPEG start, then text", "image header is corrupt"),
    ("SVG", "unsupported image format SVG; use JPEG, PNG, WEBP, GIF, HEIC or AVIF"),
    ("TIFF", "unsupported image format TIFF"),
    ("BMP", "unsupported image format BMP"),
    ("JPEG cut in half", "image data is truncated or corrupt"),
    ("JPEG without its end marker", "image data is truncated or corrupt"),
    ("PNG cut short", "image data is truncated or corrupt"),
    ("HEIC cut short", "image header is corrupt"),
    ("zero width", "image header is corrupt"),
])
def test_what_is_not_a_usable_photo_is_refused_saying_why(photo, case, message):
    """Undecodable photos are refused, as the original did, rather than guessed at: a truncated upload would give
    a face half grey, and a descriptor of that."""
    jpeg = encode(photo, "JPEG", quality=95)
    data = {
        "zero bytes": b"",
        "text renamed .jpg": b"name,face\nalice,1\n" * 20,
        "JPEG start, then text": b"\xff\xd8\xff\xe0 this is not a JPEG at all",
        "SVG": svg(),
        "TIFF": encode(photo, "TIFF"),
        "BMP": encode(photo, "BMP"),
        "JPEG cut in half": jpeg[: len(jpeg) // 2],
        "JPEG without its end marker": jpeg[:-2],
        "PNG cut short": encode(photo, "PNG")[:-100],
        "HEIC cut short": encode(photo, "HEIF")[:2000],
        "zero width": png(0, 10, 8, 2, b""),
    }[case]
    with pytest.raises(InvalidImage) as err:
        decode(data)
    assert message in str(err.value)


@pytest.mark.parametrize("fmt", ["JPEG", "MPO", "PNG", "WEBP", "GIF", "HEIF", "AVIF"])
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_damaged_photos_decode_or_are_refused_never_anything_else(photo, fmt):
    """Bit flips and cuts, as a bad link or a broken writer leaves them (seeded): each decodes, or is InvalidImage;
    no other exception (the AVIF decoder's RuntimeError once escaped), and quickly."""
    rng = random.Random(fmt)
    small = photo.resize((90, 120))
    extra = {"save_all": True, "append_images": [small]} if fmt == "MPO" else {}
    whole = encode(small, fmt, **extra)
    outcomes = set()
    for _ in range(150):
        data = bytearray(whole)
        for _ in range(rng.randrange(1, 8)):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        if rng.random() < 0.3:
            data = data[: rng.randrange(len(data))]
        started = time.perf_counter()
        try:
            decoded = decode(bytes(data))
            assert decoded.image.dtype == np.uint8 and decoded.image.shape[2] == 3
            outcomes.add("decoded")
        except InvalidImage:
            outcomes.add("refused")
        assert time.perf_counter() - started < 2.0
    assert "refused" in outcomes  # the damage was real


@pytest.mark.parametrize("width, height", [(40000, 40000), (12000, 12000), (65535, 1)])
@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")  # pytest shows what imaging silences
def test_a_decompression_bomb_is_refused_by_its_pixel_count_before_decoding(width, height):
    """A few kB that would inflate to gigabytes: refused from the header, at once, naming the configured limit.
    (40000x40000 is past Pillow's own ceiling, which speaks first; 12000x12000 is past only ours.)"""
    data = png(width, height, 8, 2, b"\0" * 64)
    assert len(data) < 200
    started = time.perf_counter()
    with pytest.raises(InvalidImage) as err:
        imaging.decode(data, MB, 60_000)
    assert time.perf_counter() - started < 1.0
    assert f"{width * height} pixels, over the limit of 60000 pixels" in str(err.value)


def test_the_pixel_limit_is_configurable_up_to_the_image_librarys_own_ceiling():
    """Past Pillow's ceiling a photo under the configured limit would still be refused, and the reason would be
    a contradiction: such a limit is refused at start."""
    ExtractorConfig(max_image_megapixels=MAX_PIXELS_CEILING_MP).validate()
    with pytest.raises(ConfigError, match="max_image_megapixels must be at most 179"):
        ExtractorConfig(max_image_megapixels=MAX_PIXELS_CEILING_MP + 1).validate()


def test_a_huge_jpeg_header_is_refused_before_decoding(photo):
    """A JPEG whose frame header claims 65000x65000: the dimensions are read, the pixels never."""
    jpeg = bytearray(encode(photo, "JPEG"))
    sof = jpeg.index(b"\xff\xc0")
    jpeg[sof + 5: sof + 9] = struct.pack(">HH", 65000, 65000)
    with pytest.raises(InvalidImage, match="over the limit of 50000000 pixels"):
        decode(bytes(jpeg))


def test_decode_limits_are_checked_before_pixels_are_decoded():
    data = encode(Image.new("RGB", (100, 100)), "PNG")
    with pytest.raises(InvalidImage, match="over the limit of 0.0 MB"):
        imaging.decode(data, 10, 10**7)
    with pytest.raises(InvalidImage, match="100x100 = 10000 pixels, over the limit of 9999 pixels"):
        imaging.decode(data, 10**7, 9999)


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


def test_large_jpeg_is_drafted_at_reduced_size_only_when_asked():
    data = encode(Image.new("RGB", (4000, 3000), (200, 100, 50)), "JPEG")
    full = imaging.decode(data, 10**8, 10**8)
    assert full.image.shape == (3000, 4000, 3) and full.scale == 1.0
    small = imaging.decode(data, 10**8, 10**8, draft_long_side=1280)
    assert small.scale == 0.5 and small.image.shape == (1500, 2000, 3)
    png_data = encode(Image.new("RGB", (4000, 3000)), "PNG")
    assert imaging.decode(png_data, 10**8, 10**8, draft_long_side=1280).scale == 1.0


@pytest.mark.parametrize("orientation, size", [(1, (2047, 1365)), (5, (1365, 2047)), (6, (1365, 2047)),
                                               (7, (1365, 2047)), (8, (1365, 2047))])
def test_a_drafted_photo_keeps_its_true_size_whatever_libjpeg_rounds_to(orientation, size):
    data = encode(Image.new("RGB", (2047, 1365)), "JPEG", exif=exif(orientation))
    decoded = imaging.decode(data, 10**8, 10**8, draft_long_side=512)
    # libjpeg decodes 2047x1365 at 1/2 as 1024x683: the size is not the true size times the scale.
    assert decoded.scale == 0.5
    assert (decoded.width, decoded.height) == size
    assert decoded.image.shape[:2] == ((683, 1024) if orientation == 1 else (1024, 683))


def test_decode_gives_rgb_whatever_the_mode():
    for mode, fmt in [("RGB", "JPEG"), ("L", "JPEG"), ("CMYK", "JPEG"), ("1", "PNG"), ("P", "PNG"), ("I;16", "PNG")]:
        decoded = imaging.decode(encode(Image.new(mode, (30, 20)), fmt), 10**7, 10**7)
        assert decoded.image.shape == (20, 30, 3) and decoded.image.dtype == np.uint8, mode


def test_thumbnail_of_a_box_past_the_edges_still_works():
    image = np.zeros((50, 80, 3), np.uint8)
    thumb = Image.open(io.BytesIO(imaging.thumbnail(image, (-40, -40, 200, 200), 64)))
    assert max(thumb.size) == 64


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "GIF", "HEIF", "AVIF"])
def test_formats_are_told_apart_by_their_first_bytes(fmt):
    data = encode(Image.new("RGB", (16, 16)), fmt)
    assert photo_formats.sniff(data) == fmt
    assert photo_formats.extension_for(data) == photo_formats.ACCEPTED[fmt][0]
    assert Image.open(io.BytesIO(data)).format == fmt


def test_formats_not_taken_are_named():
    assert photo_formats.sniff(encode(Image.new("RGB", (4, 4)), "TIFF")) == "TIFF"
    assert photo_formats.sniff(svg()) == "SVG"
    assert photo_formats.sniff(b"\xef\xbb\xbf  <svg xmlns='http://www.w3.org/2000/svg'/>") == "SVG"
    assert photo_formats.sniff(b"hello") is None and photo_formats.extension_for(b"hello") == "jpg"
