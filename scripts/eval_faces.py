"""Face detection and identification on hard cases built from the labelled photos (issue 10).

Usage: python scripts/eval_faces.py [--packs scrfd-mbf,yunet-sface] [--faces DIR] [--cases tight,group,...]
       [--reduced] [--dump FILE] [--json]

The cases are generated from the single-person photos of labels.csv, the same bytes on every run (fixed seeds):
- tight: a square crop centred on the face, 0.9-1.3x the face box's larger side, resized to 100-200 px (ID photos,
  avatars, exported crops);
- group: canvases 800-1200 px wide holding 2-12 faces of different people, each pasted with its surroundings (the
  box enlarged 1.6-2x) and scaled so that its box is 16-64 px wide, on a smooth noisy field of a photo's colours;
- rotations: the photo turned a quarter, half and three quarters counter-clockwise, in the pixels (no EXIF tag);
- jpeg20, blur (Gaussian, radius 4-6% of the face width), dark (x0.25 brightness), overexposed (x2.2, clipped):
  on the photo.
Rotations and the last four start from the photo shrunk to at most BASE_LONG_SIDE px a side.

Reference boxes: the biggest face that scrfd-mbf finds on the upright original, mapped through every image
transform exactly, landmarks too. Every other face that either pack finds on the original with a score of at
least REFERENCE_SCORE (below the packs' own thresholds, to catch blurred people in the background, who the hard
cases sometimes bring out) is unlabelled: a detection lying mostly on one counts neither as a hit nor as a false
positive. So precision counts the false faces that a hard case brings about, not those of the original photo.

Measured per case and pack: recall and precision of detection (a detection hits a reference box at IoU >= 0.5,
one to one, greedily by IoU; precision counts every face Detect reports at the server's detect_min_face_size, as
users get it), and rank-1
identification: the probe is the extracted face matching the reference box (a face not found is a miss), the
gallery holds the pack's descriptors of every other labelled photo, extracted from the originals, and rank-1 is
the fraction of probes whose nearest gallery descriptor (cosine) is the right person. For group faces, also per
box width, to choose the smallest face size for recognition: the smallest width from which rank-1 stays >= 0.95.

--reduced: 2 photos per person, one rotation each and 4 canvases, for the test suite.
--dump FILE: one JSON line per extracted probe face (similarity to the best genuine gallery face, width, score,
landmark error and every extra per-face field the extractor returns, such as quality), for quality calibration.
--json: print the figures as JSON instead of markdown tables.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import enum
import io
import json
import math
import random
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter, ImageOps

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from findface_grpc.extractor.config import ExtractorConfig  # noqa: E402
from findface_grpc.extractor.pipeline import MultiFace  # noqa: E402
from findface_grpc.extractor.server import build_service  # noqa: E402
from tests.helpers import faces_dir, labelled_photos  # noqa: E402

Box = tuple[float, float, float, float]
Point = tuple[float, float]

PACKS = ("scrfd-mbf", "yunet-sface")
REFERENCE_PACK = "scrfd-mbf"
REFERENCE_SCORE = 0.3
CASES = ("tight", "group", "rotations", "jpeg20", "blur", "dark", "overexposed")
# Well under the smallest pasted face, so that only the detector decides what is found.
MIN_FACE_SIZE = 8
MATCH_IOU = 0.5
# Box widths [low, high) of the group faces, reported apart; faces are drawn evenly from them.
SIZE_BUCKETS = ((16, 24), (24, 32), (32, 48), (48, 65))
RECOGNITION_RANK1 = 0.95
BASE_LONG_SIDE = 1000
JPEG_QUALITY = 92
QUARTER_TURNS = {90: Image.Transpose.ROTATE_90, 180: Image.Transpose.ROTATE_180, 270: Image.Transpose.ROTATE_270}
GROUP_CANVASES = 24
REDUCED_GROUP_CANVASES = 4
REDUCED_PHOTOS_PER_PERSON = 2


# ---- the extractor: every call this script makes to it is in this class --------------------------------------

@dataclass(frozen=True)
class Face:
    bbox: Box
    landmarks: tuple[Point, ...]
    score: float
    descriptor: np.ndarray | None = None  # L2-normalised; only from `extract`
    quality: float | None = None
    extras: dict = dataclasses.field(default_factory=dict)  # other per-face fields, JSON-ready


class Extractor:
    """The extractor's in-process service for one pack, called synchronously, at the detector's own score
    threshold unless `score_threshold` is given. Detect keeps the server's default minimum face size; Extract
    embeds faces down to MIN_FACE_SIZE, so that rank-1 by face size can choose the minimum for recognition."""

    # Per-face fields of the service that `Face` has already; images and arrays are left out of the extras too.
    KNOWN_FIELDS = {"bbox", "landmarks", "score", "quality", "detection", "descriptor"}

    def __init__(self, pack: str, score_threshold: float = 0.0) -> None:
        self.pack = pack
        self.loop = asyncio.new_event_loop()
        config = ExtractorConfig(model_pack=pack, workers=1, min_face_size=MIN_FACE_SIZE,
                                 detector_score_threshold=score_threshold)
        self.service, _ = build_service(config)
        self.loop.run_until_complete(self.service.start())

    def detect(self, photo: bytes) -> tuple[int, int, list[Face]]:
        # Detect as users get it: down to the server's own detect_min_face_size.
        found = self.loop.run_until_complete(self.service.detect(photo)).found
        return found.width, found.height, [self._face(f.detection, f) for f in found.faces]

    def extract(self, photo: bytes) -> list[Face]:
        extraction = self.loop.run_until_complete(
            self.service.extract(photo, selector=MultiFace.ALL, min_face_size=MIN_FACE_SIZE))
        return [self._face(f.detection, f) for f in extraction.faces]

    def __enter__(self) -> Extractor:
        return self

    def __exit__(self, *exc) -> None:
        self.loop.run_until_complete(self.service.stop())
        self.loop.close()

    def _face(self, detection, extracted=None) -> Face:
        parts = [p for p in (detection, extracted) if p is not None]
        descriptor = None
        if getattr(extracted, "descriptor", None) is not None:
            vector = np.asarray(extracted.descriptor, dtype=np.float32)
            descriptor = vector / np.linalg.norm(vector)
        quality = next((p.quality for p in parts if getattr(p, "quality", None) is not None), None)
        fields = {f.name: getattr(p, f.name) for p in parts for f in dataclasses.fields(p)}
        extras = {name: _jsonable(value) for name, value in fields.items()
                  if name not in self.KNOWN_FIELDS and not isinstance(value, (bytes, np.ndarray))}
        return Face(tuple(detection.bbox), tuple(tuple(p) for p in detection.landmarks), float(detection.score),
                    descriptor, quality, extras)


def _jsonable(value):
    if isinstance(value, enum.Enum):
        return value.name
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, np.generic):
        return value.item()
    return repr(value)


# ---- geometry: image transforms as 3x3 matrices on (x, y, 1), in continuous pixel coordinates ------------------

def translation(dx: float, dy: float) -> np.ndarray:
    return np.array([[1.0, 0.0, dx], [0.0, 1.0, dy], [0.0, 0.0, 1.0]])


def scaling(sx: float, sy: float) -> np.ndarray:
    return np.diag([sx, sy, 1.0])


def quarter_turn(degrees: int, width: int, height: int) -> np.ndarray:
    """Where PIL's counter-clockwise ROTATE_<degrees> of a width x height image takes each point."""
    return {
        90: np.array([[0.0, 1.0, 0.0], [-1.0, 0.0, width], [0.0, 0.0, 1.0]]),
        180: np.array([[-1.0, 0.0, width], [0.0, -1.0, height], [0.0, 0.0, 1.0]]),
        270: np.array([[0.0, -1.0, height], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]),
    }[degrees]


def map_points(matrix: np.ndarray, points: tuple[Point, ...]) -> tuple[Point, ...]:
    return tuple((float(x), float(y)) for x, y, _ in (matrix @ np.array([px, py, 1.0]) for px, py in points))


def map_box(matrix: np.ndarray, box: Box) -> Box:
    """The axis-aligned box around the mapped corners."""
    corners = map_points(matrix, ((box[0], box[1]), (box[2], box[1]), (box[0], box[3]), (box[2], box[3])))
    xs, ys = [p[0] for p in corners], [p[1] for p in corners]
    return min(xs), min(ys), max(xs), max(ys)


def area(box: Box) -> float:
    return max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1])


def intersection(a: Box, b: Box) -> Box:
    return max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])


def iou(a: Box, b: Box) -> float:
    inter = area(intersection(a, b))
    union = area(a) + area(b) - inter
    return inter / union if union > 0 else 0.0


def match(truth: list[Box], found: list[Box]) -> dict[int, int]:
    """truth index -> found index: pairs at IoU >= MATCH_IOU, one to one, best IoU first."""
    pairs = sorted(((iou(t, f), i, j) for i, t in enumerate(truth) for j, f in enumerate(found)), reverse=True)
    matched: dict[int, int] = {}
    for overlap, i, j in pairs:
        if overlap < MATCH_IOU:
            break
        if i not in matched and j not in matched.values():
            matched[i] = j
    return matched


# ---- the labelled faces on the originals ------------------------------------------------------------------------

@dataclass(frozen=True)
class Reference:
    file: str
    identity: str
    bbox: Box  # on the upright original (EXIF orientation applied)
    landmarks: tuple[Point, ...]
    others: tuple[Box, ...]  # other faces on the original: unlabelled


def build_references(folder: Path, photos: list[tuple[str, str]], extractors: dict[str, Extractor]
                     ) -> list[Reference]:
    """The biggest face REFERENCE_PACK finds on each photo; the other faces any of `extractors` finds there are
    unlabelled (`measure` passes extractors at REFERENCE_SCORE). A photo without a face is left out, with a
    warning."""
    references = []
    for file, identity in photos:
        data = (folder / file).read_bytes()
        _, _, faces = extractors[REFERENCE_PACK].detect(data)
        if not faces:
            print(f"{REFERENCE_PACK} finds no face on {file}: left out", file=sys.stderr)
            continue
        labelled = max(faces, key=lambda f: area(f.bbox))
        others: list[Box] = []
        for extractor in extractors.values():
            found = faces if extractor.pack == REFERENCE_PACK else extractor.detect(data)[2]
            others += [f.bbox for f in found if iou(f.bbox, labelled.bbox) < MATCH_IOU
                       and all(iou(f.bbox, o) < MATCH_IOU for o in others)]
        references.append(Reference(file, identity, labelled.bbox, labelled.landmarks, tuple(others)))
    return references


def reduced(references: list[Reference]) -> list[Reference]:
    kept: dict[str, list[Reference]] = defaultdict(list)
    for ref in references:
        if len(kept[ref.identity]) < REDUCED_PHOTOS_PER_PERSON:
            kept[ref.identity].append(ref)
    return [ref for ref in references if ref in kept[ref.identity]]


# ---- generation ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TruthFace:
    file: str  # the labelled photo it comes from
    identity: str
    bbox: Box
    landmarks: tuple[Point, ...]

    @property
    def width(self) -> float:
        return self.bbox[2] - self.bbox[0]


@dataclass(frozen=True)
class HardCase:
    case: str
    name: str
    photo: bytes  # JPEG, no EXIF
    width: int
    height: int
    faces: tuple[TruthFace, ...]
    unlabelled: tuple[Box, ...]


def upright(folder: Path, file: str) -> Image.Image:
    with Image.open(folder / file) as img:
        return ImageOps.exif_transpose(img).convert("RGB")


def jpeg(image: Image.Image, quality: int = JPEG_QUALITY) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def seeded(*key) -> random.Random:
    # String seeds are hashed with SHA-512, the same in every process (unlike hash()).
    return random.Random(":".join(map(str, key)))


def truth_face(ref: Reference, matrix: np.ndarray) -> TruthFace:
    return TruthFace(ref.file, ref.identity, map_box(matrix, ref.bbox), map_points(matrix, ref.landmarks))


def in_frame(boxes: tuple[Box, ...], matrix: np.ndarray, frame: Box) -> tuple[Box, ...]:
    """The mapped boxes that show in `frame`, if only in part. Not clipped: detectors box a face that the frame
    cuts either whole or as far as it shows."""
    mapped = [map_box(matrix, b) for b in boxes]
    return tuple(b for b in mapped if area(intersection(b, frame)) > 0)


def on_unlabelled(box: Box, unlabelled: tuple[Box, ...]) -> bool:
    return any(area(intersection(box, u)) >= 0.5 * area(box) for u in unlabelled)


def make_case(case: str, name: str, image: Image.Image, refs_and_matrices, unlabelled, quality=JPEG_QUALITY
              ) -> HardCase:
    faces = tuple(truth_face(ref, matrix) for ref, matrix in refs_and_matrices)
    return HardCase(case, name, jpeg(image, quality), image.width, image.height, faces, tuple(unlabelled))


def tight_crop(ref: Reference, image: Image.Image) -> HardCase:
    rng = seeded("tight", ref.file)
    x1, y1, x2, y2 = ref.bbox
    side = round(rng.uniform(0.9, 1.3) * max(x2 - x1, y2 - y1))
    size = rng.randint(100, 200)

    def start(centre: float, limit: int) -> int:
        # Centred, but moved inside the photo where it fits, as a cropping tool would; else padded with black.
        first = round(centre - side / 2)
        return first if side > limit else min(max(first, 0), limit - side)

    left, top = start((x1 + x2) / 2, image.width), start((y1 + y2) / 2, image.height)
    crop = image.crop((left, top, left + side, top + side)).resize((size, size), Image.Resampling.LANCZOS)
    matrix = scaling(size / side, size / side) @ translation(-left, -top)
    return make_case("tight", ref.file, crop, [(ref, matrix)], in_frame(ref.others, matrix, (0, 0, size, size)))


def base_image(image: Image.Image) -> tuple[Image.Image, np.ndarray]:
    """The photo at most BASE_LONG_SIDE px a side, and how points map onto it."""
    factor = min(1.0, BASE_LONG_SIDE / max(image.size))
    if factor == 1.0:
        return image, np.eye(3)
    size = (round(image.width * factor), round(image.height * factor))
    return image.resize(size, Image.Resampling.LANCZOS), scaling(size[0] / image.width, size[1] / image.height)


def rotations(ref: Reference, base: Image.Image, matrix: np.ndarray, turns: tuple[int, ...]) -> list[HardCase]:
    cases = []
    for degrees in turns:
        turned = base.transpose(QUARTER_TURNS[degrees])
        m = quarter_turn(degrees, base.width, base.height) @ matrix
        cases.append(make_case("rotations", f"{ref.file}@{degrees}", turned, [(ref, m)],
                               in_frame(ref.others, m, (0, 0, turned.width, turned.height))))
    return cases


def degraded(case: str, ref: Reference, base: Image.Image, matrix: np.ndarray) -> HardCase:
    quality = JPEG_QUALITY
    if case == "jpeg20":
        image, quality = base, 20
    elif case == "blur":
        radius = seeded("blur", ref.file).uniform(0.04, 0.06) * truth_face(ref, matrix).width
        image = base.filter(ImageFilter.GaussianBlur(radius))
    elif case == "dark":
        image = ImageEnhance.Brightness(base).enhance(0.25)
    else:
        image = ImageEnhance.Brightness(base).enhance(2.2)
    return make_case(case, ref.file, image, [(ref, matrix)],
                     in_frame(ref.others, matrix, (0, 0, base.width, base.height)), quality)


def background(image: Image.Image, width: int, height: int, seed: int) -> Image.Image:
    """A smooth field of the photo's colours with mild sensor-like noise: photo-like, with nothing that could be a
    face in it."""
    field = image.resize((4, 3), Image.Resampling.BOX).resize((width, height), Image.Resampling.BICUBIC)
    noise = np.random.default_rng(seed).normal(0.0, 4.0, (height, width, 3))
    return Image.fromarray(np.clip(np.asarray(field, dtype=np.float64) + noise, 0, 255).astype(np.uint8))


def group_canvas(index: int, references: list[Reference], folder: Path) -> HardCase:
    rng = seeded("group", index)
    by_identity: dict[str, list[Reference]] = defaultdict(list)
    for ref in references:
        by_identity[ref.identity].append(ref)
    width = rng.randint(800, 1200)
    height = round(width * rng.uniform(0.6, 0.8))
    people = rng.sample(sorted(by_identity), min(rng.randint(2, 12), len(by_identity)))
    canvas = background(upright(folder, rng.choice(references).file), width, height, rng.getrandbits(32))
    placed: list[Box] = []
    members, unlabelled = [], []
    for identity in people:
        ref = rng.choice(by_identity[identity])
        low, high = rng.choice(SIZE_BUCKETS)
        face_width = rng.uniform(low + 0.5, high - 0.5)  # the patch's rounding moves it by under 0.5 px
        context = rng.uniform(1.6, 2.0)
        image = upright(folder, ref.file)
        x1, y1, x2, y2 = ref.bbox
        cx, cy, half_w, half_h = (x1 + x2) / 2, (y1 + y2) / 2, context * (x2 - x1) / 2, context * (y2 - y1) / 2
        left, top = max(0, math.floor(cx - half_w)), max(0, math.floor(cy - half_h))
        right, bottom = min(image.width, math.ceil(cx + half_w)), min(image.height, math.ceil(cy + half_h))
        factor = face_width / (x2 - x1)
        size = (max(1, round((right - left) * factor)), max(1, round((bottom - top) * factor)))
        spot = free_spot(rng, size, width, height, placed)
        if spot is None:
            continue
        placed.append((spot[0], spot[1], spot[0] + size[0], spot[1] + size[1]))
        canvas.paste(image.crop((left, top, right, bottom)).resize(size, Image.Resampling.LANCZOS), spot)
        matrix = (translation(*spot) @ scaling(size[0] / (right - left), size[1] / (bottom - top))
                  @ translation(-left, -top))
        members.append((ref, matrix))
        unlabelled += in_frame(ref.others, matrix, placed[-1])
    return make_case("group", f"canvas{index:02d}", canvas, members, unlabelled)


def free_spot(rng: random.Random, size: tuple[int, int], width: int, height: int, placed: list[Box],
              tries: int = 200, gap: int = 4) -> tuple[int, int] | None:
    for _ in range(tries):
        x, y = rng.randint(0, width - size[0]), rng.randint(0, height - size[1])
        box = (x - gap, y - gap, x + size[0] + gap, y + size[1] + gap)
        if all(area(intersection(box, p)) == 0 for p in placed):
            return x, y
    return None


def generate(folder: Path, references: list[Reference], cases: tuple[str, ...] = CASES, reduced_set: bool = False
             ) -> list[HardCase]:
    """The hard cases of `cases` built from `references` (all of them: pass `reduced(...)` for the reduced set), in
    a fixed order. With `reduced_set`, one rotation per photo (the three turns in turn) and fewer canvases."""
    out: list[HardCase] = []
    photo_cases = [c for c in cases if c != "group"]
    for number, ref in enumerate(references if photo_cases else []):
        image = upright(folder, ref.file)
        if "tight" in photo_cases:
            out.append(tight_crop(ref, image))
        base, matrix = base_image(image)
        if "rotations" in photo_cases:
            turns = (tuple(QUARTER_TURNS)[number % 3],) if reduced_set else tuple(QUARTER_TURNS)
            out += rotations(ref, base, matrix, turns)
        out += [degraded(c, ref, base, matrix) for c in photo_cases if c not in ("tight", "rotations")]
    if "group" in cases:
        out += [group_canvas(i, references, folder)
                for i in range(REDUCED_GROUP_CANVASES if reduced_set else GROUP_CANVASES)]
    return sorted(out, key=lambda c: CASES.index(c.case))


# ---- scoring ------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Gallery:
    files: tuple[str, ...]
    identities: tuple[str, ...]
    vectors: np.ndarray  # one L2-normalised row per file

    def best(self, descriptor: np.ndarray, exclude_file: str, identity: str) -> tuple[str, float, float]:
        """(nearest identity, best genuine similarity, best impostor similarity), leaving out the probe's own
        photo."""
        scores = self.vectors @ descriptor
        nearest, best, genuine, impostor = "", -2.0, -1.0, -1.0
        for file, who, score in zip(self.files, self.identities, scores):
            if file == exclude_file:
                continue
            if score > best:
                nearest, best = who, float(score)
            if who == identity:
                genuine = max(genuine, float(score))
            else:
                impostor = max(impostor, float(score))
        return nearest, genuine, impostor


def build_gallery(extractor: Extractor, folder: Path, references: list[Reference]) -> Gallery:
    files, identities, vectors = [], [], []
    for ref in references:
        faces = extractor.extract((folder / ref.file).read_bytes())
        hit = match([ref.bbox], [f.bbox for f in faces])
        if not hit:
            print(f"{extractor.pack} does not extract the labelled face of {ref.file}: not in its gallery",
                  file=sys.stderr)
            continue
        files.append(ref.file)
        identities.append(ref.identity)
        vectors.append(faces[hit[0]].descriptor)
    return Gallery(tuple(files), tuple(identities), np.stack(vectors))


@dataclass(frozen=True)
class FaceResult:
    truth: TruthFace
    detected: bool
    probe: Face | None  # the extracted face matching the reference box
    identified: bool = False
    genuine: float | None = None  # similarity to the best genuine gallery face
    impostor: float | None = None


@dataclass(frozen=True)
class PhotoResult:
    case: str
    name: str
    faces: tuple[FaceResult, ...]
    detections: int
    false_positives: int


def evaluate(extractor: Extractor, gallery: Gallery, cases: list[HardCase]) -> list[PhotoResult]:
    results = []
    for case in cases:
        width, height, detections = extractor.detect(case.photo)
        if abs(width - case.width) > 1 or abs(height - case.height) > 1:
            print(f"{extractor.pack} reports {case.case}/{case.name} as {width}x{height}, it is "
                  f"{case.width}x{case.height}: boxes may be in another frame", file=sys.stderr)
        truth = [f.bbox for f in case.faces]
        hits = match(truth, [d.bbox for d in detections])
        unmatched = [d for j, d in enumerate(detections) if j not in hits.values()]
        false_positives = sum(1 for d in unmatched if not on_unlabelled(d.bbox, case.unlabelled))
        extracted = extractor.extract(case.photo)
        probes = match(truth, [f.bbox for f in extracted])
        faces = []
        for i, face in enumerate(case.faces):
            if i not in probes:
                faces.append(FaceResult(face, i in hits, None))
                continue
            probe = extracted[probes[i]]
            nearest, genuine, impostor = gallery.best(probe.descriptor, face.file, face.identity)
            faces.append(FaceResult(face, i in hits, probe, nearest == face.identity, genuine, impostor))
        results.append(PhotoResult(case.case, case.name, tuple(faces), len(detections), false_positives))
    return results


@dataclass(frozen=True)
class Score:
    faces: int
    detected: int
    false_positives: int
    identified: int

    @property
    def recall(self) -> float | None:
        return self.detected / self.faces if self.faces else None

    @property
    def precision(self) -> float | None:
        counted = self.detected + self.false_positives
        return self.detected / counted if counted else None

    @property
    def rank1(self) -> float | None:
        return self.identified / self.faces if self.faces else None

    def as_dict(self) -> dict:
        return {"recall": self.recall, "precision": self.precision, "rank1": self.rank1, "faces": self.faces,
                "detected": self.detected, "false_positives": self.false_positives, "identified": self.identified}


def score(results: list[PhotoResult], case: str, min_width: float = 0.0, max_width: float = math.inf) -> Score:
    """Figures for one case; with a width range, for the faces in it only (false positives are then those of the
    whole case)."""
    photos = [r for r in results if r.case == case]
    faces = [f for r in photos for f in r.faces if min_width <= f.truth.width < max_width]
    return Score(len(faces), sum(f.detected for f in faces), sum(r.false_positives for r in photos),
                 sum(f.identified for f in faces))


def smallest_recognisable(results: list[PhotoResult]) -> int | None:
    """The smallest bucket's lower width from which every bucket up has group rank-1 >= RECOGNITION_RANK1."""
    smallest = None
    for low, high in reversed(SIZE_BUCKETS):
        rank1 = score(results, "group", low, high).rank1
        if rank1 is None or rank1 < RECOGNITION_RANK1:
            break
        smallest = low
    return smallest


def summary(results: list[PhotoResult], cases: tuple[str, ...]) -> dict:
    out = {"cases": {c: score(results, c).as_dict() for c in cases}}
    if "group" in cases:
        out["group_sizes"] = {f"{low}-{high - 1}": score(results, "group", low, high).as_dict()
                              for low, high in SIZE_BUCKETS}
        out["group_sizes"]["24-64"] = score(results, "group", 24, 65).as_dict()
        out["smallest_recognisable_width"] = smallest_recognisable(results)
    return out


def dump_lines(pack: str, results: list[PhotoResult]) -> list[dict]:
    lines = []
    for photo in results:
        for face in photo.faces:
            if face.probe is None:
                continue
            error = np.mean([math.dist(a, b) for a, b in zip(face.probe.landmarks, face.truth.landmarks)])
            lines.append({
                "pack": pack, "case": photo.case, "photo": photo.name, "file": face.truth.file,
                "identity": face.truth.identity, "width": face.truth.width, "genuine": face.genuine,
                "impostor": face.impostor, "identified": face.identified, "score": face.probe.score,
                "landmark_error": float(error) / face.truth.width, "quality": face.probe.quality,
                **face.probe.extras,
            })
    return lines


# ---- report -------------------------------------------------------------------------------------------------------

def figure(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def markdown(summaries: dict[str, dict], cases: tuple[str, ...]) -> str:
    packs = list(summaries)
    head = "| case | " + " | ".join(f"{p} recall | precision | rank-1 | n" for p in packs) + " |"
    lines = [head, "|---" * (1 + 4 * len(packs)) + "|"]
    for case in cases:
        cells = []
        for pack in packs:
            s = summaries[pack]["cases"][case]
            cells += [figure(s["recall"]), figure(s["precision"]), figure(s["rank1"]), str(s["faces"])]
        lines.append(f"| {case} | " + " | ".join(cells) + " |")
    if "group" in cases:
        lines += ["", "Group faces by box width (px):", "",
                  "| width | " + " | ".join(f"{p} recall | rank-1 | n" for p in packs) + " |",
                  "|---" * (1 + 3 * len(packs)) + "|"]
        for bucket in summaries[packs[0]]["group_sizes"]:
            cells = []
            for pack in packs:
                s = summaries[pack]["group_sizes"][bucket]
                cells += [figure(s["recall"]), figure(s["rank1"]), str(s["faces"])]
            lines.append(f"| {bucket} | " + " | ".join(cells) + " |")
        lines.append("")
        for pack in packs:
            width = summaries[pack]["smallest_recognisable_width"]
            lines.append(f"- {pack}: smallest width with group rank-1 >= {RECOGNITION_RANK1} from there up: "
                         + (f"{width} px" if width is not None else "none"))
    return "\n".join(lines)


def measure(folder: Path, packs: list[str], cases: tuple[str, ...] = CASES, reduced_set: bool = False
            ) -> tuple[dict[str, dict], list[dict]]:
    """Generate the hard cases and score each pack on them: (summary by pack, dump lines)."""
    started = time.monotonic()
    # Unlabelled faces come from both packs whichever are measured, so that a pack's figures do not depend on
    # which others run beside it.
    with contextlib.ExitStack() as stack:
        finders = {pack: stack.enter_context(Extractor(pack, REFERENCE_SCORE)) for pack in PACKS}
        references = build_references(folder, labelled_photos(folder), finders)
    hard = generate(folder, reduced(references) if reduced_set else references, cases, reduced_set)
    print(f"references and {len(hard)} hard-case photos in {time.monotonic() - started:.1f} s", file=sys.stderr)
    summaries, dumped = {}, []
    for pack in packs:
        began = time.monotonic()
        with Extractor(pack) as extractor:
            results = evaluate(extractor, build_gallery(extractor, folder, references), hard)
        summaries[pack] = summary(results, cases)
        dumped += dump_lines(pack, results)
        print(f"{pack}: measured in {time.monotonic() - began:.1f} s", file=sys.stderr)
    return summaries, dumped


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packs", default=",".join(PACKS))
    parser.add_argument("--faces", type=Path, default=None, help="the labelled photos (default: shared/faces)")
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--reduced", action="store_true", help="the small set the test suite runs")
    parser.add_argument("--dump", type=Path, default=None, help="write one JSON line per extracted probe face")
    parser.add_argument("--json", action="store_true", help="print JSON instead of markdown")
    args = parser.parse_args(argv)
    folder = args.faces or faces_dir()
    if folder is None:
        sys.stderr.write("labelled photos not found: pass --faces or set FINDFACE_TEST_FACES\n")
        return 2
    unknown = set(args.cases.split(",")) - set(CASES)
    if unknown:
        sys.stderr.write(f"unknown cases {sorted(unknown)}; choose from {','.join(CASES)}\n")
        return 2
    cases = tuple(c for c in CASES if c in args.cases.split(","))
    started = time.monotonic()
    summaries, dumped = measure(folder, args.packs.split(","), cases, args.reduced)
    if args.dump:
        args.dump.write_text("".join(json.dumps(line) + "\n" for line in dumped))
    print(json.dumps(summaries, indent=2) if args.json else markdown(summaries, cases))
    print(f"total {time.monotonic() - started:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
