"""The motion gate: a cheap test on small grey frames, so that a static scene costs decoding and little else.

Intensity is the share of pixels whose grey level moved by more than NOISE_LEVELS since the last sampled frame
(sensor noise and compression flicker stay under it); the original's md-threshold is on the same kind of scale
(0.002 by default, 0.05 "too high to see motion").
"""
from __future__ import annotations

import numpy as np

NOISE_LEVELS = 18


def motion_intensity(previous: np.ndarray, current: np.ndarray) -> float:
    """Share of pixels that changed between two grey frames of the same shape, in [0, 1]."""
    diff = np.abs(current.astype(np.int16) - previous.astype(np.int16))
    return float(np.count_nonzero(diff > NOISE_LEVELS)) / diff.size


class MotionGate:
    def __init__(self, threshold: float) -> None:
        self.threshold = threshold
        self._previous: np.ndarray | None = None

    def moved(self, grey: np.ndarray) -> bool:
        """Whether `grey` differs enough from the frame given before; the first frame, and any frame of another
        size (the stream changed), count as motion."""
        previous, self._previous = self._previous, grey
        if self.threshold <= 0 or previous is None or previous.shape != grey.shape:
            return True
        return motion_intensity(previous, grey) >= self.threshold
