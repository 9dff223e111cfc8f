"""Photo decoding with limits, and the small image encodings the extractor returns.

Every way a photo can be unusable ends in `InvalidImage` with a message that says what was wrong, checked in
order of cost: byte size before parsing, header dimensions before decoding pixels.
"""
from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from findface_grpc.errors import InvalidImage

# MPO is what many cameras write for JPEG; it decodes as JPEG.
ACCEPTED_FORMATS = {"JPEG", "MPO", "PNG", "WEBP"}
ORIENTATION_TAG = 0x0112
QUARTER_TURNED = {5, 6, 7, 8}  # EXIF orientations that swap width and height


@dataclass(frozen=True)
class Decoded:
    image: np.ndarray  # HxWx3 uint8 RGB, EXIF orientation applied; smaller than the photo when drafted
    scale: float  # image pixels per photo pixel: 1, 1/2, 1/4 or 1/8
    width: int  # the photo's true size, EXIF orientation applied
    height: int


def decode(data: bytes, max_bytes: int, max_pixels: int, draft_long_side: int = 0) -> Decoded:
    """JPEG/PNG/WEBP bytes -> the RGB pixels with EXIF orientation applied, and the photo's true size.

    With `draft_long_side`, a large JPEG is decoded at 1/2, 1/4 or 1/8 size (libjpeg's DCT scaling, nearly free)
    as long as its long side stays at least that long. libjpeg rounds the reduced size up, so the scale is the
    factor itself, not the ratio of the sizes, and the true size is kept rather than derived from it.
    """
    if not data:
        raise InvalidImage("image is empty")
    if len(data) > max_bytes:
        raise InvalidImage(f"image is {len(data) / 1e6:.1f} MB, over the limit of {max_bytes / 1e6:.1f} MB")
    try:
        with warnings.catch_warnings():
            # Our own pixel limit below is the one that counts; PIL's warning would only add noise.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise InvalidImage("not a JPEG, PNG or WEBP image") from None
    except Image.DecompressionBombError as exc:
        raise InvalidImage(f"image has too many pixels: {exc}") from None
    except OSError as exc:
        raise InvalidImage(f"image header is corrupt: {exc}") from None
    except ValueError as exc:
        # PIL refuses compressed PNG text and colour-profile chunks that would inflate past its limit: a bomb.
        raise InvalidImage(f"image metadata is too large or corrupt: {exc}") from None
    if img.format not in ACCEPTED_FORMATS:
        raise InvalidImage(f"unsupported image format {img.format}; use JPEG, PNG or WEBP")
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
        turned = img.getexif().get(ORIENTATION_TAG, 1) in QUARTER_TURNED
        img = ImageOps.exif_transpose(img)
        rgb = img.convert("RGB")
    except (OSError, ValueError, SyntaxError) as exc:
        raise InvalidImage(f"image data is truncated or corrupt: {exc}") from None
    true_width, true_height = (height, width) if turned else (width, height)
    return Decoded(np.asarray(rgb), scale, true_width, true_height)


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
