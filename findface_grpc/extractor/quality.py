"""How fit a face is for recognition, as one number in [0, 1], from what predicts it: size, sharpness, pose and the
detector's confidence. Pure functions of a detection and its aligned crop.

Each factor is 1 where it stops mattering and falls to 0 where recognition fails; the score is their product, so
one bad factor is enough to make a face poor, and a square root keeps the middle of the scale usable. The knees
were chosen on the hard evaluation set (scripts/eval_faces.py), where genuine-pair similarity falls with the
score; docs/accuracy.md has the table.
"""
from __future__ import annotations

import numpy as np

from findface_grpc.extractor.models.base import Detection
from findface_grpc.extractor.models.geometry import ARCFACE_TEMPLATE, estimate_similarity

# Face box side, px in the photo: from unusable to as good as it gets for a 112-px embedder.
SIZE_FLOOR, SIZE_FULL = 12.0, 64.0
# Variance of the Laplacian over the inner face of the 112-px crop: a blurred or upscaled face is flat.
SHARPNESS_HALF = 40.0
# Landmarks' distance from the frontal template once the best similarity is applied, in eye distances:
# frontal faces sit near 0.05, three-quarter views near 0.15, profiles beyond 0.3.
POSE_GOOD, POSE_BAD = 0.08, 0.35
# Detector score: the default thresholds sit at 0.5-0.6; near 0.9 the detector is sure.
SCORE_FLOOR, SCORE_FULL = 0.35, 0.85

_EYE_DISTANCE = float(np.linalg.norm(ARCFACE_TEMPLATE[1] - ARCFACE_TEMPLATE[0]))
_INNER_FACE = (slice(36, 100), slice(24, 88))  # rows, cols of the 112-px crop: eyes to chin, cheek to cheek


def ramp(value: float, low: float, high: float) -> float:
    """0 at or below `low`, 1 at or above `high`, linear between."""
    return float(np.clip((value - low) / (high - low), 0.0, 1.0))


def size_factor(bbox) -> float:
    return ramp(min(bbox[2] - bbox[0], bbox[3] - bbox[1]), SIZE_FLOOR, SIZE_FULL)


def sharpness(crop: np.ndarray) -> float:
    """Variance of the 4-neighbour Laplacian of the crop's inner face, in grey levels squared."""
    grey = crop[_INNER_FACE].astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    laplacian = (
        grey[:-2, 1:-1] + grey[2:, 1:-1] + grey[1:-1, :-2] + grey[1:-1, 2:] - 4.0 * grey[1:-1, 1:-1]
    )
    return float(laplacian.var())


def sharpness_factor(crop: np.ndarray) -> float:
    value = sharpness(crop)
    return value / (value + SHARPNESS_HALF)


def pose_error(landmarks) -> float:
    """How far the 5 landmarks are from a frontal face's, after the best rotation, scale and shift: root mean
    square distance in eye distances. Turning the head moves the nose and mouth off the template; roll does not
    count, as alignment removes it."""
    points = np.asarray(landmarks, dtype=np.float64).reshape(-1, 2)
    matrix = estimate_similarity(points, ARCFACE_TEMPLATE)
    mapped = points @ matrix[:, :2].T + matrix[:, 2]
    return float(np.sqrt(((mapped - ARCFACE_TEMPLATE) ** 2).sum(axis=1).mean()) / _EYE_DISTANCE)


def pose_factor(landmarks) -> float:
    return 1.0 - ramp(pose_error(landmarks), POSE_GOOD, POSE_BAD)


def face_quality(detection: Detection, crop: np.ndarray) -> float:
    """`detection` in photo pixels, `crop` its aligned 112x112 RGB crop -> quality in [0, 1]."""
    product = (
        size_factor(detection.bbox)
        * sharpness_factor(crop)
        * pose_factor(detection.landmarks)
        * ramp(detection.score, SCORE_FLOOR, SCORE_FULL)
    )
    return round(float(np.sqrt(product)), 4)
