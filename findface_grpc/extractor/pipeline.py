"""From photo bytes to aligned face crops: decode, detect, filter, select, align.

Embedding is not here: crops from concurrent requests meet in the `EmbedBatcher`, so that the embedder runs on
batches. Everything here is synchronous CPU work that the server runs in a thread pool (onnxruntime and PIL
release the GIL).
"""
from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import numpy as np

from findface_grpc.errors import InvalidArgument, TooManyFaces
from findface_grpc.extractor import imaging
from findface_grpc.extractor.models.base import Detection, Detector
from findface_grpc.extractor.detection import UPRIGHT_CHECKS, FaceFinder, fine_scale, merge_by_score, shift
from findface_grpc.extractor.models.geometry import align_face, face_chip
from findface_grpc.extractor.quality import face_quality

Box = tuple[float, float, float, float]

# Each caller-given box costs an alignment and an embedding (and a detector pass when it matches no face of the
# whole photo): uncapped, one request of copies of a box held an extractor for hours. 256 take a few seconds on
# two cores, well within the gateway's extractor_timeout_s, and a verify of two such lists answers 65,536 pairs.
MAX_BOXES = 256


class SkipReason(enum.Enum):
    TOO_SMALL = "too_small"
    LOW_QUALITY = "low_quality"


class MultiFace(enum.Enum):
    BIGGEST = "biggest"
    ALL = "all"
    REJECT = "reject"


@dataclass(frozen=True)
class Limits:
    max_image_bytes: int
    max_image_pixels: int
    # Smallest face (box width and height, px of the photo) that is embedded: below it recognition is unreliable,
    # so such faces are reported, not used.
    min_face_size: int
    # Smallest face Detect reports.
    detect_min_face_size: int = 20


@dataclass(frozen=True)
class PreparedFace:
    detection: Detection  # in true photo pixels
    crop: np.ndarray  # 112x112x3 uint8 RGB, aligned to the ArcFace template
    quality: float
    # dlib face chips by size (for the attribute models), only those asked for: size x size x 3 uint8 RGB.
    chips: Mapping[int, np.ndarray] = field(default_factory=dict)


@dataclass(frozen=True)
class Skipped:
    face: PreparedFace
    reason: SkipReason
    message: str


@dataclass(frozen=True)
class Prepared:
    image: np.ndarray  # possibly decoded at reduced size: see `scale`
    scale: float  # image pixels per photo pixel (<= 1)
    width: int  # the photo's true size, EXIF orientation applied
    height: int
    faces: tuple[PreparedFace, ...]  # to embed
    skipped: tuple[Skipped, ...] = ()  # found, not to embed


@dataclass(frozen=True)
class Found:
    """What Detect answers: every face, with its quality, and the photo's orientation."""

    width: int
    height: int
    faces: tuple[PreparedFace, ...]

    @property
    def orientation(self) -> int:
        return self.faces[0].detection.orientation if self.faces else 1


def box_area(box: Box) -> float:
    return max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1])


def iou(a: Box, b: Box) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = box_area(a) + box_area(b) - inter
    return inter / union if union > 0 else 0.0


def box_sides(box: Box) -> tuple[float, float]:
    return box[2] - box[0], box[3] - box[1]


def describe_box(box: Box) -> str:
    return "[" + ", ".join(str(round(v)) for v in box) + "]"


def why_unusable(face: PreparedFace, min_face_size: int, min_quality: float) -> Skipped | None:
    """Why this face cannot be embedded under these limits, or None when it can."""
    box = face.detection.bbox
    width, height = box_sides(box)
    if min(width, height) < min_face_size:
        return Skipped(
            face,
            SkipReason.TOO_SMALL,
            f"face at {describe_box(box)} is {width:.0f}x{height:.0f} px, under the minimum of {min_face_size} px "
            "for recognition",
        )
    if face.quality < min_quality:
        return Skipped(
            face,
            SkipReason.LOW_QUALITY,
            f"face at {describe_box(box)} has quality {face.quality:.2f}, under min_quality {min_quality:.2f}",
        )
    return None


def apply_selector(
    faces: list[PreparedFace], selector: MultiFace, min_face_size: int, min_quality: float
) -> tuple[list[PreparedFace], list[Skipped]]:
    """The faces to embed and the faces left out, by the selector's rules. A face that was asked for but cannot
    be used is an error, never a silent omission: the biggest face under BIGGEST, any face under REJECT when no
    face is usable, and under ALL when none is."""
    verdicts = [(face, why_unusable(face, min_face_size, min_quality)) for face in faces]
    usable = [face for face, problem in verdicts if problem is None]
    skipped = [problem for _, problem in verdicts if problem is not None]
    if selector is MultiFace.REJECT and len(usable) > 1:
        raise TooManyFaces(
            f"Too many faces: {len(usable)}",
            details={"faces": [list(f.detection.bbox) for f in usable]},
        )
    if skipped and not usable:
        raise InvalidArgument("no face can be used: " + "; ".join(s.message for s in skipped))
    return usable, skipped


def rescale(d: Detection, factor: float) -> Detection:
    if factor == 1.0:
        return d
    return replace(
        d,
        bbox=tuple(v * factor for v in d.bbox),
        landmarks=tuple((x * factor, y * factor) for x, y in d.landmarks),
    )


class Pipeline:
    """Photo bytes -> detections, aligned crops and their quality.

    The detector sees at most 640 pixels a side, so a large JPEG is decoded at a reduced size for it (libjpeg
    scales by 1/2, 1/4 or 1/8 while decoding, at a fraction of the cost, keeping the long side >=
    DRAFT_LONG_SIDE). Alignment uses that image too when each chosen face box is at least ALIGN_SOURCE_MIN px wide
    in it - as wide as the 112-px crop it becomes, where the face itself spans about 80 px, so the crop is still
    downsampled - and decodes the photo at a larger size only for faces smaller than that. The passes that find
    faces the main detector pass misses are in `detection.FaceFinder`.
    """

    DRAFT_LONG_SIDE = 512
    ALIGN_SOURCE_MIN = 112

    def __init__(self, detector: Detector, limits: Limits, extra_passes: bool = True) -> None:
        self.detector = detector
        self.limits = limits
        self.finder = FaceFinder(detector)
        # Off: one detector pass over the upright photo, as before the large-face, fine and turned passes.
        # Only for measuring what they cost.
        self.extra_passes = extra_passes

    def decode(self, data: bytes, draft_long_side: int = 0) -> imaging.Decoded:
        return imaging.decode(data, self.limits.max_image_bytes, self.limits.max_image_pixels, draft_long_side)

    def find_faces(
        self, data: bytes, min_face_size: int, try_rotations: bool = False
    ) -> tuple[int, int, list[Detection], np.ndarray, float]:
        """Faces at least `min_face_size` px wide and high, in true photo pixels, best first; with the photo's
        size, and its draft decoding and that one's scale (image pixels per photo pixel)."""
        draft = self.decode(data, self.DRAFT_LONG_SIDE)
        image, scale, width, height = draft.image, draft.scale, draft.width, draft.height
        if not self.extra_passes:
            found = [rescale(d, 1.0 / scale) for d in self.detector.detect(image)]
            return width, height, self._at_least(found, min_face_size), image, scale
        found = [rescale(d, 1.0 / scale) for d in self.finder.upright(image)]
        if self.finder.wants_fine_pass(found, (height, width), min_face_size):
            needed = fine_scale(width, height, min_face_size, self.detector.input_size) * max(width, height)
            larger, larger_scale = image, scale
            if needed > max(image.shape[:2]):
                decoded = self.decode(data, int(needed))
                larger, larger_scale = decoded.image, decoded.scale
            fine = self.finder.fine(larger, max(1, round(min_face_size * larger_scale)))
            found = merge_by_score(found + [rescale(d, 1.0 / larger_scale) for d in fine])
        if try_rotations or not found:
            found = self._with_turned(found, image, scale, try_rotations)
        else:
            found = self._settle_turns(image, scale, found)
        return width, height, self._at_least(found, min_face_size), image, scale

    def _with_turned(
        self, upright: list[Detection], image: np.ndarray, scale: float, keep_all: bool
    ) -> list[Detection]:
        """Faces of every orientation (`keep_all`), or those of the one orientation whose best face scores best:
        a photo lies one way, and a weaker face found another way is more likely a false one."""
        by_turn = {0: upright} | {
            k: [rescale(d, 1.0 / scale) for d in found] for k, found in self.finder.turned(image).items()
        }
        if keep_all:
            return merge_by_score([d for found in by_turn.values() for d in found])
        return max(by_turn.values(), key=lambda found: max((d.score for d in found), default=0.0))

    def _settle_turns(self, image: np.ndarray, scale: float, found: list[Detection]) -> list[Detection]:
        """The faces with each doubtful one settled in its way up, largest first. A group photo holds many small,
        low-scoring faces: once UPRIGHT_CHECKS doubtful faces in a row proved upright, the photo is taken to be
        upright and the rest are left as found, which bounds the cost."""
        settled, upright_in_a_row = [], 0
        for d in sorted(found, key=lambda d: box_area(d.bbox), reverse=True):
            if upright_in_a_row < UPRIGHT_CHECKS and self.finder.doubtful(d):
                d = rescale(self.finder.settle_orientation(image, rescale(d, scale)), 1.0 / scale)
                upright_in_a_row = upright_in_a_row + 1 if d.orientation == 1 else 0
            settled.append(d)
        # Two loose boxes around one turned face settle on the same face: keep it once.
        return self.finder.one_way_up(merge_by_score(settled))

    @staticmethod
    def _at_least(found: list[Detection], min_face_size: int) -> list[Detection]:
        return [d for d in found if min(box_sides(d.bbox)) >= min_face_size]

    def _prepare_faces(
        self, data: bytes, draft: np.ndarray, scale: float, detections: list[Detection], chip_sizes=()
    ) -> tuple[PreparedFace, ...]:
        """Aligned crops and quality of these faces (true photo pixels), and their dlib chips of `chip_sizes`. A
        face is cropped from the draft when it is at least ALIGN_SOURCE_MIN px wide there, else from one larger
        decoding, so that its crop, descriptor and quality do not depend on what else is in the photo or on how
        it was asked for. The chips come from the same image, not from the crop: resampling twice blurs them."""
        too_small = [d for d in detections if scale < 1.0 and box_sides(d.bbox)[0] * scale < self.ALIGN_SOURCE_MIN]
        larger, larger_scale = draft, scale
        if too_small:
            smallest = max(1.0, min(box_sides(d.bbox)[0] for d in too_small))
            needed_long_side = max(draft.shape[:2]) / scale * min(1.0, self.ALIGN_SOURCE_MIN / smallest)
            decoded = self.decode(data, round(needed_long_side))
            larger, larger_scale = decoded.image, decoded.scale
        faces = []
        for d in detections:
            image, image_scale = (larger, larger_scale) if d in too_small else (draft, scale)
            landmarks = rescale(d, image_scale).landmarks
            crop = align_face(image, landmarks)
            chips = {size: face_chip(image, landmarks, size) for size in chip_sizes}
            faces.append(PreparedFace(d, crop, face_quality(d, crop), chips))
        return tuple(faces)

    def detect_photo(
        self, data: bytes, min_face_size: int = 0, try_rotations: bool = False, chip_sizes=()
    ) -> Found:
        """Every face at least `min_face_size` px (0: the configured detect_min_face_size), with its quality."""
        width, height, detections, image, scale = self.find_faces(
            data, min_face_size or self.limits.detect_min_face_size, try_rotations
        )
        return Found(width, height, self._prepare_faces(data, image, scale, detections, chip_sizes))

    def prepare(
        self,
        data: bytes,
        boxes: list[Box] | None = None,
        selector: MultiFace = MultiFace.BIGGEST,
        min_face_size: int = 0,
        min_quality: float = 0.0,
        try_rotations: bool = False,
        chip_sizes=(),
    ) -> Prepared:
        """The faces to embed, chosen by `selector` (or those in `boxes`, every one of which must be usable),
        and the faces found but left out. `min_face_size` 0: the configured minimum for recognition.
        `chip_sizes`: the dlib chips to cut of each face (see `_prepare_faces`)."""
        min_size = min_face_size or self.limits.min_face_size
        if boxes and len(boxes) > MAX_BOXES:
            raise InvalidArgument(f"too many boxes: {len(boxes)}; at most {MAX_BOXES} faces are taken from one photo")
        if boxes:
            draft = self.decode(data, self.DRAFT_LONG_SIDE)
            image, scale, width, height = draft.image, draft.scale, draft.width, draft.height
            detections = self._faces_in_boxes(data, image, scale, boxes)
        else:
            # Faces down to Detect's minimum are looked for, so that those too small to use are reported.
            width, height, detections, image, scale = self.find_faces(
                data, min(min_size, self.limits.detect_min_face_size), try_rotations
            )
            if selector is MultiFace.BIGGEST and detections:
                detections = [max(detections, key=lambda d: box_area(d.bbox))]
        faces = self._prepare_faces(data, image, scale, detections, chip_sizes)
        if boxes:
            problems = [p for f in faces if (p := why_unusable(f, min_size, min_quality)) is not None]
            if problems:
                raise InvalidArgument("; ".join(p.message for p in problems))
            return Prepared(image, scale, width, height, faces)
        usable, skipped = apply_selector(list(faces), selector, min_size, min_quality)
        return Prepared(image, scale, width, height, tuple(usable), tuple(skipped))

    def _faces_in_boxes(self, data: bytes, image: np.ndarray, scale: float, boxes: list[Box]) -> list[Detection]:
        """The face inside each caller-given box (true photo pixels).

        The box only says where to look; the landmarks for alignment still come from the detector, first from
        one pass over the whole photo and, for a box that matched nothing there (a small or partly hidden face),
        from a second pass over the box's surroundings at full resolution.
        """
        for box in boxes:
            if not all(math.isfinite(v) for v in box):
                raise InvalidArgument(f"bad box {list(box)}: coordinates must be finite numbers")
            if not (box[2] > box[0] and box[3] > box[1]):
                raise InvalidArgument(f"bad box {list(box)}: needs x1 < x2 and y1 < y2")
        whole = [rescale(d, 1.0 / scale) for d in self.finder.upright(image)]
        full = None
        found = []
        for box in boxes:
            best = max(whole, key=lambda d: iou(d.bbox, box), default=None)
            if best is None or iou(best.bbox, box) < 0.3:
                if full is None:
                    full = image if scale == 1.0 else self.decode(data).image
                best = self._detect_around(full, box)
            if best is None:
                raise InvalidArgument(f"no face found in box {[round(v) for v in box]}")
            found.append(best)
        return found

    def _detect_around(self, image: np.ndarray, box: Box) -> Detection | None:
        h, w = image.shape[:2]
        mx, my = (box[2] - box[0]) * 0.25, (box[3] - box[1]) * 0.25
        x1, y1 = max(0, int(box[0] - mx)), max(0, int(box[1] - my))
        x2, y2 = min(w, int(np.ceil(box[2] + mx))), min(h, int(np.ceil(box[3] + my)))
        if x2 - x1 < 8 or y2 - y1 < 8:
            return None
        # The surroundings of a box are a tight crop of the face: the large-face pass is what finds it there.
        local = self.finder.upright(np.ascontiguousarray(image[y1:y2, x1:x2]))
        shifted = [shift(d, x1, y1) for d in local]
        best = max(shifted, key=lambda d: iou(d.bbox, box), default=None)
        return best if best is not None and iou(best.bbox, box) > 0.1 else None
