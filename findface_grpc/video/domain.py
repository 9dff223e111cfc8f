"""The video detector's values and the geometry they need. Pure: no I/O, no grpc."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

Box = tuple[float, float, float, float]  # x1, y1, x2, y2 in frame pixels


@dataclass(frozen=True)
class Region:
    """A rectangle of the frame (the original's WxH+X+Y)."""

    x: int
    y: int
    width: int
    height: int

    def clip(self, frame_width: int, frame_height: int) -> "Region | None":
        """The part inside a frame of this size; None when nothing of it is."""
        x1, y1 = max(0, self.x), max(0, self.y)
        x2, y2 = min(frame_width, self.x + self.width), min(frame_height, self.y + self.height)
        return Region(x1, y1, x2 - x1, y2 - y1) if x2 > x1 and y2 > y1 else None

    def holds_centre(self, box: Box) -> bool:
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        return self.x <= cx < self.x + self.width and self.y <= cy < self.y + self.height


def parse_geometry(text: str) -> Region:
    """The original's WxH+X+Y (X geometry, as its --rot and --roi take), e.g. "150x123+300+155"."""
    size, plus, rest = text.strip().partition("+")
    width, x_sep, height = size.partition("x")
    x, plus2, y = rest.partition("+")
    try:
        values = [int(v) for v in (width, height, x, y)]
    except ValueError:
        raise ValueError(f"{text!r} is not WxH+X+Y (e.g. 150x123+300+155)") from None
    if not (plus and x_sep and plus2) or values[0] <= 0 or values[1] <= 0 or min(values[2:]) < 0:
        raise ValueError(f"{text!r} is not WxH+X+Y with a positive size and a place inside the frame")
    return Region(x=values[2], y=values[3], width=values[0], height=values[1])


@dataclass(frozen=True)
class Camera:
    """What the detector needs of a camera: where to read it and which parts of its frames count."""

    id: str
    url: str
    rot: Region | None = None  # region of tracking: only this part of each frame is searched for faces
    roi: Region | None = None  # region of interest: only faces whose centre is inside are posted


@dataclass(frozen=True)
class CameraReport:
    """Whether the detector runs a camera, and why not: what the gateway shows as the camera's status."""

    camera_id: str
    running: bool
    reason: str = ""


@dataclass(frozen=True)
class Face:
    """A face the extractor found in a frame, in frame pixels."""

    box: Box
    landmarks: tuple[tuple[float, float], ...]
    score: float
    quality: float


@dataclass(frozen=True, eq=False)
class Frame:
    camera_id: str
    time: float  # unix seconds
    image: np.ndarray  # RGB, height x width x 3: the region of tracking only
    offset: tuple[int, int] = (0, 0)  # where `image` sits in the full frame
    jpeg: bytes = b""  # `image` encoded, as sent to detection


@dataclass(frozen=True)
class Snapshot:
    """One face of one frame, kept as a candidate for posting."""

    track_id: str
    frame_time: float
    box: Box  # in the full frame
    quality: float
    photo: bytes  # JPEG crop around the face
    photo_box: Box  # the face in `photo`


@dataclass
class Counters:
    """What a camera has done, for logs and tests."""

    frames: int = 0  # decoded
    sampled: int = 0  # taken at detect_fps
    still: int = 0  # sampled but skipped by the motion gate
    detected: int = 0  # sent to detection and answered
    dropped: int = 0  # sampled but replaced by a newer frame before detection could take it
    detect_errors: int = 0
    stream_errors: int = 0  # opens and reads that failed
    reopens: int = 0
    tracks: int = 0
    posts: int = 0
    lag_s: list[float] = field(default_factory=list)  # frame time -> detection answered, the last few hundred


def iou(a: Box, b: Box) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def shift(box: Box, dx: float, dy: float) -> Box:
    return (box[0] + dx, box[1] + dy, box[2] + dx, box[3] + dy)


def scaled(box: Box, factor: float, width: int, height: int) -> tuple[int, int, int, int]:
    """`box` scaled by `factor` about its centre, made square on its longer side, in whole pixels inside a frame of
    this size."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    half = max(box[2] - box[0], box[3] - box[1]) * factor / 2
    return (max(0, round(cx - half)), max(0, round(cy - half)),
            min(width, round(cx + half)), min(height, round(cy + half)))


def short_side(box: Box) -> float:
    return min(box[2] - box[0], box[3] - box[1])


def long_side(box: Box) -> float:
    return max(box[2] - box[0], box[3] - box[1])
