"""What the rest of the extractor sees of the models: detections, and the two model roles as protocols."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from findface_grpc.errors import ModelError

__all__ = ["Box", "Point", "ModelError", "Detection", "Detector", "Embedder", "Attributes"]

Box = tuple[float, float, float, float]
Point = tuple[float, float]


@dataclass(frozen=True)
class Detection:
    bbox: Box  # x1, y1, x2, y2 in pixels of the image given to the detector
    # Insightface's order, sides as the viewer sees them: left eye, right eye, nose, left mouth corner, right
    # mouth corner.
    landmarks: tuple[Point, ...]
    score: float
    # EXIF orientation of the face in the image given to the detector: 1 upright, 3 upside down, 6 and 8 lying
    # on its side (see common.proto). Detectors find upright faces only; the others come from turned passes.
    orientation: int = 1


@dataclass(frozen=True)
class Attributes:
    """What the attribute models said of a face; None and () for what was not asked."""

    gender: str | None = None  # "female" or "male"
    gender_score: float = 0.0  # the model's probability of that gender, in [0.5, 1]
    age: float | None = None  # years
    emotions: tuple[tuple[str, float], ...] = ()  # every class with its probability, most likely first


class Detector(Protocol):
    input_size: int  # side of the square the photo is letterboxed into
    resizable: bool  # whether `detect` also runs at other input sizes (multiples of 32)
    upright_score: float  # faces scoring under this may be turned faces, found with a lower score

    def detect(self, image: np.ndarray, input_size: int | None = None) -> list[Detection]:
        """HxWx3 uint8 RGB of any size -> faces scoring at least the detector's threshold, best first, after NMS.
        `input_size`: letterbox into this square instead of `input_size` (only when `resizable`)."""
        ...


class Embedder(Protocol):
    dim: int
    max_batch: int  # most crops one model call takes; `embed` splits larger inputs itself

    def embed(self, crops: np.ndarray) -> np.ndarray:
        """Nx112x112x3 uint8 RGB aligned faces -> N x dim float32, each row L2-normalised."""
        ...
