"""Finding every face in a photo: which detector passes run, on what, and how their results are merged.

One pass with the photo letterboxed into the detector's input (640 px) finds the common case, a face between
about 2% and 60% of the photo. Three kinds of faces fall outside it, and each gets a pass of its own, run only
when it can change the answer so that the common case costs what it did:

- a face filling the whole photo (ID photos, avatars, exported crops) is larger than the detector's largest
  anchors: the *large-face* pass shows the detector the photo smaller (a 160-px input where the model allows it,
  at a tenth of the cost; else the photo padded to twice its size, only when nothing else was found), unless
  the main pass already found a large face;
- a small face in a big group photo shrinks below what the detector resolves once the photo is fitted into
  640 px: the *fine* pass looks at the photo in tiles at a resolution where the smallest face asked for is
  FINE_FACE_PX wide. It runs only when that can matter: the photo is shrunk for the main pass, and that pass found
  no face, or faces near its resolution limit;
- a face turned by 90, 180 or 270 degrees (scans, phone photos whose EXIF was stripped) is often still found,
  but with a lower score and landmarks in the wrong places, so its crop would be upside down or sideways: a
  face that scores under what the model gives upright faces, or whose eye line is steep, is looked at again in
  a crop turned each of the four ways, and it is taken as turned when it scores better so. When no face is found at all, or when
  the caller asks, the *turned* passes detect on the whole photo turned the other ways.

Every detection comes back in the coordinates of the image given, whatever pass found it.
"""
from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
from PIL import Image

from findface_grpc.extractor.models.base import Detection, Detector
from findface_grpc.extractor.models.geometry import (
    QUARTER_TURNS_TO_ORIENTATION,
    nms,
    roll_degrees,
    unturn_points,
)

LARGE_INPUT = 160
# The main pass finds faces up to about half the photo; once it has found one at least this share of the photo's
# short side, a larger face beside it is not to be expected, and the large-face pass is skipped.
LARGE_FACE_SHARE = 0.25
# A face this wide (in detector input pixels) is found reliably by SCRFD and YuNet; below it recall drops fast.
FINE_FACE_PX = 16
# The fine pass's tiles overlap by more than the largest face it is meant for, so each such face lies whole in
# at least one tile and faces cut by a tile's edge can be dropped.
TILE_OVERLAP = 96
MAX_TILES = 9
# Faces whose eye line is steeper than this are treated as lying on their side.
SIDEWAYS_ROLL = 50.0
# A face's surroundings are checked for turns at this input size where the model allows it: the crop holds one
# face, which fills it.
TURN_CHECK_INPUT = 160
TURN_CHECK_CONTEXT = 2.2  # crop side / face box side: with less, turned faces lack the context to score high
TURN_MARGIN = 0.02
# Doubtful faces found upright one after the other that make a photo count as upright (see Pipeline).
UPRIGHT_CHECKS = 3
DUPLICATE_IOU = 0.3


def _box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of each box of a (Nx4) with each of b (Mx4)."""
    ix = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    iy = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = ix * iy
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def _boxes(detections: list[Detection]) -> np.ndarray:
    return np.array([d.bbox for d in detections], dtype=np.float64).reshape(-1, 4)


def add_new(kept: list[Detection], extra: list[Detection]) -> list[Detection]:
    """`kept`, plus the detections of `extra` that overlap none of them: a face already found keeps the
    detection of the pass that sees it best."""
    if not extra:
        return kept
    if not kept:
        return list(extra)
    overlap = _box_iou(_boxes(extra), _boxes(kept)).max(axis=1)
    return kept + [d for d, o in zip(extra, overlap) if o < DUPLICATE_IOU]


def merge_by_score(detections: list[Detection]) -> list[Detection]:
    """One detection per face, the best scoring, best first."""
    if not detections:
        return []
    keep = nms(_boxes(detections), np.array([d.score for d in detections]), DUPLICATE_IOU)
    return [detections[k] for k in keep]


def shift(d: Detection, dx: float, dy: float, factor: float = 1.0) -> Detection:
    """Detection in a sub-image that starts at (dx, dy) of a `factor`-times-larger image -> in that image."""
    x1, y1, x2, y2 = d.bbox
    return replace(
        d,
        bbox=(x1 * factor + dx, y1 * factor + dy, x2 * factor + dx, y2 * factor + dy),
        landmarks=tuple((x * factor + dx, y * factor + dy) for x, y in d.landmarks),
    )


def unturn(d: Detection, quarter_turns: int, width: int, height: int) -> Detection:
    """A detection in np.rot90(image, quarter_turns) -> the same face in `image` (width x height)."""
    corners = unturn_points(np.array([[d.bbox[0], d.bbox[1]], [d.bbox[2], d.bbox[3]]]), quarter_turns, width, height)
    x1, y1 = corners.min(axis=0)
    x2, y2 = corners.max(axis=0)
    points = unturn_points(np.array(d.landmarks), quarter_turns, width, height)
    return replace(
        d,
        bbox=(float(x1), float(y1), float(x2), float(y2)),
        landmarks=tuple((float(x), float(y)) for x, y in points),
        orientation=QUARTER_TURNS_TO_ORIENTATION[quarter_turns % 4],
    )


def tile_origins(length: int, tile: int, overlap: int) -> list[int]:
    """Starts of tiles of `tile` px covering `length` px, neighbours overlapping by at least `overlap`."""
    if length <= tile:
        return [0]
    count = math.ceil((length - overlap) / (tile - overlap))
    step = (length - tile) / (count - 1)
    return [round(i * step) for i in range(count)]


def fine_scale(width: int, height: int, min_face: int, tile: int) -> float:
    """Scale of the fine pass: the smallest face asked for becomes FINE_FACE_PX wide, unless more than MAX_TILES
    tiles would be needed; never above the photo's own resolution."""
    scale = min(1.0, FINE_FACE_PX / max(min_face, 1))
    while scale > 0.05:
        tiles = len(tile_origins(round(width * scale), tile, TILE_OVERLAP)) * len(
            tile_origins(round(height * scale), tile, TILE_OVERLAP)
        )
        if tiles <= MAX_TILES:
            break
        scale *= 0.9
    return scale


def _resized(image: np.ndarray, scale: float) -> np.ndarray:
    """`image` scaled by `scale` (<= 1), each side at least 1 px: a photo many times longer than wide stays one."""
    if scale >= 1.0:
        return image
    h, w = image.shape[:2]
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BILINEAR))


def _pad_square(image: np.ndarray, side: int, at: tuple[int, int] = (0, 0)) -> np.ndarray:
    canvas = np.zeros((side, side, 3), dtype=np.uint8)
    h, w = image.shape[:2]
    canvas[at[1] : at[1] + h, at[0] : at[0] + w] = image
    return canvas


def _crop_square(image: np.ndarray, left: int, top: int, side: int) -> np.ndarray:
    """The side x side square of `image` at (left, top), black where it lies outside the image."""
    h, w = image.shape[:2]
    canvas = np.zeros((side, side, 3), dtype=np.uint8)
    x0, y0 = max(0, left), max(0, top)
    x1, y1 = min(w, left + side), min(h, top + side)
    if x1 > x0 and y1 > y0:
        canvas[y0 - top : y1 - top, x0 - left : x1 - left] = image[y0:y1, x0:x1]
    return canvas


def is_sideways(d: Detection) -> bool:
    return abs(roll_degrees(d.landmarks)) > SIDEWAYS_ROLL


class FaceFinder:
    """The passes of one detector over one photo. Stateless between photos; safe to share between threads as
    long as the detector is (onnxruntime sessions are)."""

    def __init__(self, detector: Detector) -> None:
        self.detector = detector

    def upright(self, image: np.ndarray) -> list[Detection]:
        """Upright faces of any size from a few percent of the photo up to all of it: main and large-face passes."""
        found = self.detector.detect(image)
        short_side = min(image.shape[:2])
        if any(d.bbox[2] - d.bbox[0] >= LARGE_FACE_SHARE * short_side for d in found):
            return found
        if self.detector.resizable:
            large = self.detector.detect(image, LARGE_INPUT)
            # Small faces at 160 px are the main pass's business, and it sees them better.
            return add_new(found, [d for d in large if d.bbox[2] - d.bbox[0] >= LARGE_FACE_SHARE * short_side])
        if found:
            return found
        # The detector sees the padded square at its input size, so the photo is shrunk to half that first: the
        # same picture for it, and the square never outgrows the input (a 1x65535 strip would ask for 48 GiB).
        h, w = image.shape[:2]
        scale = min(1.0, self.detector.input_size / (2 * max(h, w)))
        small = _resized(image, scale)
        sh, sw = small.shape[:2]
        side = 2 * max(sh, sw)
        at = ((side - sw) // 2, (side - sh) // 2)
        padded = self.detector.detect(_pad_square(small, side, at))
        return [shift(d, -at[0] / scale, -at[1] / scale, 1.0 / scale) for d in padded]

    def wants_fine_pass(self, found: list[Detection], image_shape: tuple[int, int], min_face: int) -> bool:
        """Whether faces of `min_face` px (in `image` pixels) could be missed by the main pass and exist here: none
        was found, or the smallest found is near the limit."""
        h, w = image_shape
        main_scale = min(self.detector.input_size / w, self.detector.input_size / h)
        if min_face * main_scale >= FINE_FACE_PX:
            return False
        # Faces of a photo tend to be of a size: a group photo's smallest found face is near the main pass's limit,
        # a portrait's or a couple's is not.
        smallest = min((d.bbox[2] - d.bbox[0] for d in found), default=0.0) * main_scale
        return smallest < 3 * FINE_FACE_PX

    def fine(self, image: np.ndarray, min_face: int) -> list[Detection]:
        """Small faces, from tiles of the photo at a resolution where `min_face` px are FINE_FACE_PX."""
        h, w = image.shape[:2]
        tile = self.detector.input_size
        scale = fine_scale(w, h, min_face, tile)
        scaled = _resized(image, scale)
        sh, sw = scaled.shape[:2]
        found = []
        for y0 in tile_origins(sh, tile, TILE_OVERLAP):
            for x0 in tile_origins(sw, tile, TILE_OVERLAP):
                part = scaled[y0 : y0 + tile, x0 : x0 + tile]
                ph, pw = part.shape[:2]
                for d in self.detector.detect(_pad_square(part, tile)):
                    x1, y1, x2, y2 = d.bbox
                    cut = (x0 > 0 and x1 < 2) or (y0 > 0 and y1 < 2) or (x0 + pw < sw and x2 > pw - 3) or (
                        y0 + ph < sh and y2 > ph - 3
                    )
                    if not cut:
                        found.append(shift(d, x0 / scale, y0 / scale, 1.0 / scale))
        return merge_by_score(found)

    def doubtful(self, d: Detection) -> bool:
        """Whether this face may be turned: upright faces score above the model's `upright_score`, and their
        eyes are level."""
        return d.score < self.detector.upright_score or is_sideways(d)

    def settle_orientation(self, image: np.ndarray, d: Detection) -> Detection:
        """The same face, detected in whichever quarter turn of its surroundings it scores best in; `d` itself
        when that is upright. A turned face must beat upright by TURN_MARGIN, as a blurred or dark upright face
        scores low in every turn."""
        x1, y1, x2, y2 = d.bbox
        side = max(8, round(TURN_CHECK_CONTEXT * max(x2 - x1, y2 - y1)))
        left, top = round((x1 + x2 - side) / 2), round((y1 + y2 - side) / 2)
        crop = _crop_square(image, left, top, side)
        in_crop = np.array([[x1 - left, y1 - top, x2 - left, y2 - top]])
        input_size = TURN_CHECK_INPUT if self.detector.resizable else None
        # Upright keeps the better of its scores in the whole photo and in the crop: scores are comparable only at
        # the same scale, and a face can score higher in either.
        best, best_score = d, d.score
        for k in range(4):
            turned = np.ascontiguousarray(np.rot90(crop, k))
            found = [unturn(f, k, side, side) for f in self.detector.detect(turned, input_size)]
            # The same face, however differently boxed in a turn it does not look like a face in.
            same = [f for f, overlap in zip(found, _box_iou(_boxes(found), in_crop)[:, 0]) if overlap >= 0.3]
            if not same:
                continue
            face = max(same, key=lambda f: f.score)
            if k == 0:
                best_score = max(best_score, face.score)
            elif face.score - TURN_MARGIN > best_score:
                best, best_score = shift(face, left, top), face.score - TURN_MARGIN
        return best

    def one_way_up(self, settled: list[Detection]) -> list[Detection]:
        """Settled faces, less the doubtful ones that disagree with the photo's way up. A photo lies one way: once
        a face proved turned beyond doubt (scoring as upright faces do, once turned), a face that scores low the
        other way up is most often something in the turned background that looks a little like a face."""
        turned = [d for d in settled if d.orientation != 1 and d.score >= self.detector.upright_score]
        if not turned:
            return settled
        way_up = max(turned, key=lambda d: d.score).orientation
        return [d for d in settled if d.orientation == way_up or d.score >= self.detector.upright_score]

    def turned(self, image: np.ndarray) -> dict[int, list[Detection]]:
        """Faces found with the photo turned by one, two and three quarter turns, in `image` coordinates."""
        h, w = image.shape[:2]
        return {
            k: [unturn(d, k, w, h) for d in self.upright(np.ascontiguousarray(np.rot90(image, k)))] for k in (1, 2, 3)
        }
