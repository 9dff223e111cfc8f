"""From photo bytes to aligned face crops: decode, detect, filter, select, align.

Embedding is not here: crops from concurrent requests meet in the `EmbedBatcher`, so that the embedder runs on
batches. Everything here is synchronous CPU work that the server runs in a thread pool (onnxruntime and PIL
release the GIL).
"""
from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np

from findface_grpc.errors import InvalidArgument, TooManyFaces
from findface_grpc.extractor import imaging
from findface_grpc.extractor.models.base import Detection, Detector
from findface_grpc.extractor.models.geometry import align_face

Box = tuple[float, float, float, float]


class MultiFace(enum.Enum):
    BIGGEST = "biggest"
    ALL = "all"
    REJECT = "reject"


@dataclass(frozen=True)
class Limits:
    max_image_bytes: int
    max_image_pixels: int
    min_face_size: int


@dataclass(frozen=True)
class PreparedFace:
    detection: Detection
    crop: np.ndarray  # 112x112x3 uint8 RGB, aligned to the ArcFace template


@dataclass(frozen=True)
class Prepared:
    image: np.ndarray  # possibly decoded at reduced size: see `scale`
    scale: float  # image pixels per photo pixel (<= 1)
    width: int  # the photo's true size, EXIF orientation applied
    height: int
    faces: tuple[PreparedFace, ...]  # boxes and landmarks in true photo pixels


def box_area(box: Box) -> float:
    return max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1])


def iou(a: Box, b: Box) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = box_area(a) + box_area(b) - inter
    return inter / union if union > 0 else 0.0


def select_faces(detections: list[Detection], selector: MultiFace) -> list[Detection]:
    if selector is MultiFace.ALL or len(detections) <= 1:
        return list(detections)
    if selector is MultiFace.REJECT:
        raise TooManyFaces(
            f"Too many faces: {len(detections)}",
            details={"faces": [list(d.bbox) for d in detections]},
        )
    return [max(detections, key=lambda d: box_area(d.bbox))]


def rescale(d: Detection, factor: float) -> Detection:
    if factor == 1.0:
        return d
    return Detection(
        bbox=tuple(v * factor for v in d.bbox),
        landmarks=tuple((x * factor, y * factor) for x, y in d.landmarks),
        score=d.score,
    )


class Pipeline:
    """Photo bytes -> detections and aligned crops.

    The detector sees at most 640 pixels a side, so a large JPEG is decoded at a reduced size for it (libjpeg
    scales by 1/2, 1/4 or 1/8 while decoding, at a fraction of the cost, keeping the long side >=
    DRAFT_LONG_SIDE). Alignment uses that image too when each chosen face box is at least ALIGN_SOURCE_MIN px wide
    in it - as wide as the 112-px crop it becomes, where the face itself spans about 80 px, so the crop is still
    downsampled - and decodes the photo at full size only for faces smaller than that.
    """

    DRAFT_LONG_SIDE = 512
    ALIGN_SOURCE_MIN = 112

    def __init__(self, detector: Detector, limits: Limits) -> None:
        self.detector = detector
        self.limits = limits

    def decode(self, data: bytes, draft: bool = False) -> tuple[np.ndarray, float]:
        return imaging.decode(
            data, self.limits.max_image_bytes, self.limits.max_image_pixels, self.DRAFT_LONG_SIDE if draft else 0
        )

    def detect(self, image: np.ndarray, scale: float = 1.0, min_face_size: int = 0) -> list[Detection]:
        """Faces at least `min_face_size` px wide and high in the true photo (0: the configured default), in true
        photo pixels, best score first. `scale`: image pixels per photo pixel."""
        min_size = min_face_size or self.limits.min_face_size
        found = [rescale(d, 1.0 / scale) for d in self.detector.detect(image)]
        return [d for d in found if d.bbox[2] - d.bbox[0] >= min_size and d.bbox[3] - d.bbox[1] >= min_size]

    def detect_photo(self, data: bytes, min_face_size: int = 0) -> tuple[int, int, list[Detection]]:
        image, scale = self.decode(data, draft=True)
        width, height = round(image.shape[1] / scale), round(image.shape[0] / scale)
        return width, height, self.detect(image, scale, min_face_size)

    def prepare(
        self,
        data: bytes,
        boxes: list[Box] | None = None,
        selector: MultiFace = MultiFace.BIGGEST,
        min_face_size: int = 0,
    ) -> Prepared:
        image, scale = self.decode(data, draft=True)
        if boxes:
            detections = self._faces_in_boxes(data, image, scale, boxes)
        else:
            detections = select_faces(self.detect(image, scale, min_face_size), selector)
        width, height = round(image.shape[1] / scale), round(image.shape[0] / scale)
        if scale < 1.0 and any((d.bbox[2] - d.bbox[0]) * scale < self.ALIGN_SOURCE_MIN for d in detections):
            image, scale = self.decode(data)
        faces = tuple(PreparedFace(d, align_face(image, rescale(d, scale).landmarks)) for d in detections)
        return Prepared(image, scale, width, height, faces)

    def _faces_in_boxes(self, data: bytes, image: np.ndarray, scale: float, boxes: list[Box]) -> list[Detection]:
        """The face inside each caller-given box (true photo pixels), whatever its size.

        The box only says where to look; the landmarks for alignment still come from the detector, first from
        one pass over the whole photo and, for a box that matched nothing there (a small or partly hidden face),
        from a second pass over the box's surroundings at full resolution.
        """
        for box in boxes:
            if not (box[2] > box[0] and box[3] > box[1]):
                raise InvalidArgument(f"bad box {list(box)}: needs x1 < x2 and y1 < y2")
        whole = [rescale(d, 1.0 / scale) for d in self.detector.detect(image)]
        full = None
        found = []
        for box in boxes:
            best = max(whole, key=lambda d: iou(d.bbox, box), default=None)
            if best is None or iou(best.bbox, box) < 0.3:
                if full is None:
                    full = image if scale == 1.0 else self.decode(data)[0]
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
        local = self.detector.detect(np.ascontiguousarray(image[y1:y2, x1:x2]))
        shifted = [
            Detection(
                bbox=(d.bbox[0] + x1, d.bbox[1] + y1, d.bbox[2] + x1, d.bbox[3] + y1),
                landmarks=tuple((x + x1, y + y1) for x, y in d.landmarks),
                score=d.score,
            )
            for d in local
        ]
        best = max(shifted, key=lambda d: iou(d.bbox, box), default=None)
        return best if best is not None and iou(best.bbox, box) > 0.1 else None
