"""Embedded colour profiles: a photo's pixels converted to sRGB, the colours the models were trained on.

Phones and cameras store pixels in the colour space of their profile: Display P3 (iPhones), Adobe RGB (cameras),
a press profile (CMYK JPEGs from print workflows). Read as if they were sRGB, their colours are shifted (P3 and
Adobe RGB look washed out, CMYK can be far off). Most photos carry no profile or an sRGB one, which costs nothing
here: the first is never looked at, the second is found to be sRGB once and remembered.

A profile that cannot be used (corrupt, or for another colour space than the pixels) is no reason to refuse the
photo: it is decoded as if it had none, as before profiles were read, and that is logged once (at debug level).
"""
from __future__ import annotations

import hashlib
import io
import logging
import threading
from collections import OrderedDict

import numpy as np
from PIL import Image, ImageCms

log = logging.getLogger(__name__)

SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
# The ICC colour space of a profile -> the Pillow mode of the pixels it describes.
PROFILE_MODES = {"RGB": "RGB", "CMYK": "CMYK", "GRAY": "L"}
# Relative colorimetric with black point compensation: as browsers show photos and print software converts CMYK
# for the screen. (Perceptual tables, in the v4 sRGB profile for one, would change colours of photos in sRGB.)
INTENT = ImageCms.Intent.RELATIVE_COLORIMETRIC
FLAGS = ImageCms.Flags.BLACKPOINTCOMPENSATION
# Distinct profiles remembered: few in practice (one per phone or camera model); the bound keeps crafted photos,
# each with a profile of its own, from growing memory.
REMEMBERED = 64
# A transform that moves no colour of this grid by more than one level is sRGB's own, and is not applied.
_GRID = np.stack(np.meshgrid(*[np.r_[0:256:15]] * 3, indexing="ij"), -1).reshape(1, -1, 3).astype(np.uint8)
_SAME = "sRGB"


class _Transforms:
    """(profile digest, pixel mode) -> the transform to sRGB, _SAME, or why the profile is not used; thread-safe,
    as photos are decoded in a thread pool. One transform serves every thread at once: littlecms keeps no state of
    a call in it (each call copies its one-pixel cache), and Pillow releases the GIL while it runs."""

    def __init__(self) -> None:
        self._known: OrderedDict[tuple[bytes, str], ImageCms.ImageCmsTransform | str] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, icc: bytes, mode: str) -> ImageCms.ImageCmsTransform | str:
        key = (hashlib.blake2b(icc, digest_size=16).digest(), mode)
        with self._lock:
            if key in self._known:
                self._known.move_to_end(key)
                return self._known[key]
        found = _transform(icc, mode)  # outside the lock: building one takes a few milliseconds
        with self._lock:
            if key not in self._known and not isinstance(found, ImageCms.ImageCmsTransform) and found != _SAME:
                log.debug("a photo's colour profile is not used (%s): its pixels are taken as sRGB", found)
            self._known[key] = found
            if len(self._known) > REMEMBERED:
                self._known.popitem(last=False)
        return found


_transforms = _Transforms()


def to_srgb(image: Image.Image, icc: bytes) -> Image.Image | None:
    """`image` (mode RGB, CMYK or L) converted from the colour space of the profile `icc` to sRGB, as RGB; None
    when there is nothing to convert (an sRGB profile) or the profile cannot be used."""
    found = _transforms.get(icc, image.mode)
    if isinstance(found, ImageCms.ImageCmsTransform):
        return found.apply(image)
    return None


def _transform(icc: bytes, mode: str) -> ImageCms.ImageCmsTransform | str:
    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        space = profile.profile.xcolor_space.strip()
        if PROFILE_MODES.get(space) != mode:
            return f"a profile for {space or 'an unknown colour space'} on {mode} pixels"
        transform = ImageCms.buildTransform(profile, SRGB, mode, "RGB", INTENT, FLAGS)
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError) as exc:
        return f"{type(exc).__name__}: {exc}"
    if mode == "RGB":
        grid = Image.fromarray(_GRID)
        moved = np.abs(np.asarray(transform.apply(grid)).astype(np.int16) - _GRID).max()
        if moved <= 1:
            return _SAME
    return transform
