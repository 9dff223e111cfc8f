"""Photo decoding with limits, and the small image encodings the extractor returns.

Every way a photo can be unusable ends in `InvalidImage` with a message that says what was wrong, checked in
order of cost: byte size before parsing, the format by its first bytes, header dimensions before decoding pixels.
Whatever the photo's mode, the result is 8-bit sRGB, upright as EXIF (or HEIF's own rotation and mirroring) says.
"""
from __future__ import annotations

import io
import re
import struct
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, UnidentifiedImageError
from pillow_heif import register_heif_opener

from findface_grpc import photo_formats
from findface_grpc.errors import InvalidImage
from findface_grpc.extractor import colour

# Thumbnails, depth maps and auxiliary images of a HEIF file are never used: not parsing them is less work and
# less attack surface. libheif applies the file's rotation and mirroring (irot, imir) itself while decoding, and
# pillow-heif then sets the EXIF orientation to 1, so a HEIC photo is upright like any other.
register_heif_opener(thumbnails=False, depth_images=False, aux_images=False)
# Our own pixel limit, checked from the header, is the one that counts; Pillow's warning for sizes under its own
# ceiling would only add noise. Set once here: warnings.catch_warnings() is not thread-safe, and photos are
# decoded in a thread pool.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)

# Pillow only tries these formats' parsers on the bytes: never TIFF's, PSD's or any other's.
OPEN_FORMATS = tuple(photo_formats.ACCEPTED)
ORIENTATION_TAG = 0x0112
TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
QUARTER_TURNED = {5, 6, 7, 8}  # EXIF orientations that swap width and height
# Pillow refuses images of more pixels as decompression bombs before our own limit is checked: the most that a
# configured limit can allow.
MAX_PIXELS_CEILING = 2 * Image.MAX_IMAGE_PIXELS
SIXTEEN_BIT_GREY = {"I;16", "I;16B", "I;16L", "I;16N", "I"}
WHITE = (255, 255, 255, 255)
_BOMB_PIXELS = re.compile(r"\((\d+) pixels\)")


@dataclass(frozen=True)
class Decoded:
    image: np.ndarray  # HxWx3 uint8 RGB, EXIF orientation applied; smaller than the photo when drafted
    scale: float  # image pixels per photo pixel: 1, 1/2, 1/4 or 1/8
    width: int  # the photo's true size, EXIF orientation applied
    height: int


def decode(data: bytes, max_bytes: int, max_pixels: int, draft_long_side: int = 0) -> Decoded:
    """Photo bytes (see photo_formats.ACCEPTED) -> the RGB pixels, upright, and the photo's true size. Of an
    animation (GIF, WEBP) or a multi-picture JPEG (MPO) the first picture.

    With `draft_long_side`, a large JPEG is decoded at 1/2, 1/4 or 1/8 size (libjpeg's DCT scaling, a fraction of
    the cost) as long as its long side stays at least that long. libjpeg rounds the reduced size up, so the scale is the
    factor itself, not the ratio of the sizes, and the true size is kept rather than derived from it.
    """
    if not data:
        raise InvalidImage("image is empty")
    if len(data) > max_bytes:
        raise InvalidImage(f"image is {len(data) / 1e6:.1f} MB, over the limit of {max_bytes / 1e6:.1f} MB")
    img = _open(data, max_pixels)
    width, height = img.size
    if width == 0 or height == 0:
        raise InvalidImage(f"image has zero size ({width}x{height})")
    if width * height > max_pixels:
        raise InvalidImage(
            f"image is {width}x{height} = {width * height} pixels, over the limit of {max_pixels} pixels"
        )
    scale = 1.0
    if draft_long_side and img.format in ("JPEG", "MPO") and max(width, height) >= 2 * draft_long_side:
        factor = max(width, height) / draft_long_side
        img.draft("RGB", (int(width / factor) + 1, int(height / factor) + 1))
        scale = 1.0 / round(width / img.size[0])
    try:
        img.load()
        rgb = in_srgb(img)
    except (OSError, ValueError, SyntaxError, EOFError, struct.error, RuntimeError) as exc:
        # RuntimeError: what the AVIF decoder raises for damaged data.
        raise InvalidImage(f"image data is truncated or corrupt: {exc}") from None
    # After loading: a PNG may keep its EXIF after the pixels.
    orientation = exif_orientation(img)
    if orientation in TRANSPOSE:
        rgb = rgb.transpose(TRANSPOSE[orientation])
    true_width, true_height = (height, width) if orientation in QUARTER_TURNED else (width, height)
    return Decoded(np.asarray(rgb), scale, true_width, true_height)


def _open(data: bytes, max_pixels: int) -> Image.Image:
    """The photo with its header read and no pixels decoded, or InvalidImage naming what the bytes are."""
    try:
        return Image.open(io.BytesIO(data), formats=OPEN_FORMATS)
    except UnidentifiedImageError:
        sniffed = photo_formats.sniff(data)
        if sniffed in photo_formats.ACCEPTED:
            raise InvalidImage(f"image header is corrupt: not a readable {sniffed} image") from None
        if sniffed:
            raise InvalidImage(f"unsupported image format {sniffed}; use {photo_formats.NAMES}") from None
        raise InvalidImage(f"not a {photo_formats.NAMES} image") from None
    except Image.DecompressionBombError as exc:
        # PIL's own ceiling (far above ours) refuses before the size is known to us; its message has the count.
        found = _BOMB_PIXELS.search(str(exc))
        pixels = found.group(1) if found else "too many"
        raise InvalidImage(f"image has {pixels} pixels, over the limit of {max_pixels} pixels") from None
    except (OSError, SyntaxError, EOFError, struct.error, RuntimeError) as exc:
        raise InvalidImage(f"image header is corrupt: {exc}") from None
    except ValueError as exc:
        # PIL refuses compressed PNG text and colour-profile chunks that would inflate past its limit: a bomb.
        raise InvalidImage(f"image metadata is too large or corrupt: {exc}") from None


def exif_orientation(img: Image.Image) -> int:
    """The EXIF orientation, 1-8; 1 when there is none or it is unreadable or out of range: damaged metadata in
    a photo whose pixels decode is no reason to refuse it."""
    try:
        value = img.getexif().get(ORIENTATION_TAG, 1)
    except (OSError, ValueError, SyntaxError, EOFError, struct.error, TypeError, KeyError, IndexError):
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def in_srgb(img: Image.Image) -> Image.Image:
    """8-bit RGB in sRGB: converted from the colour space of the photo's embedded profile, if it has one that is
    not sRGB's (colour.py). CMYK and grey pixels are converted from their own mode, the rest once made RGB."""
    icc = img.info.get("icc_profile")
    if not icc:
        return to_rgb(img)
    source = img if img.mode in ("CMYK", "L") and "transparency" not in img.info else to_rgb(img)
    return colour.to_srgb(source, icc) or to_rgb(source)


def to_rgb(img: Image.Image) -> Image.Image:
    """8-bit RGB of any mode. Transparent parts are laid on white: what the photo looks like in a browser or on a
    printed page, and never the arbitrary colour (often black) that fully transparent pixels happen to store.
    16-bit grey keeps its top 8 bits (PIL's own conversion would clip nearly every value to white)."""
    if img.mode in SIXTEEN_BIT_GREY:
        grey = (np.asarray(img).astype(np.uint32) >> 8).clip(0, 255).astype(np.uint8)
        return Image.fromarray(grey).convert("RGB")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info:
        rgba = img.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, WHITE), rgba).convert("RGB")
    # Already RGB (nearly every photo): no copy; the array made of it is the one copy of the pixels.
    return img if img.mode == "RGB" else img.convert("RGB")


def encode_png(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


def thumbnail(image: np.ndarray, bbox: tuple[float, float, float, float], size: int) -> bytes:
    """JPEG of the face box enlarged by 25% on each side, longest side `size` px."""
    x1, y1, x2, y2 = bbox
    mx, my = (x2 - x1) * 0.25, (y2 - y1) * 0.25
    h, w = image.shape[:2]
    box = (
        max(0, int(x1 - mx)),
        max(0, int(y1 - my)),
        min(w, int(np.ceil(x2 + mx))),
        min(h, int(np.ceil(y2 + my))),
    )
    if box[2] <= box[0] or box[3] <= box[1]:
        box = (0, 0, w, h)
    crop = Image.fromarray(image).crop(box)
    crop.thumbnail((size, size), Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    crop.save(buf, format="JPEG", quality=90)
    return buf.getvalue()
